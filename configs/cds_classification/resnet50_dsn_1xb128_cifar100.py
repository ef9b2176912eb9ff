_base_ = './resnet50_cds_1xb128_cifar100.py'
model = dict(mode='dsn')
