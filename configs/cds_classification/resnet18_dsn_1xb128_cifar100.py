# Deeply-supervised nets baseline: CE on the same auxiliary heads.
_base_ = './resnet18_cds_1xb128_cifar100.py'
model = dict(mode='dsn')
