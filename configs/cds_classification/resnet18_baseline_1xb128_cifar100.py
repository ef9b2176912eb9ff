# Plain ResNet-18 trained on the same view-1 data and schedule.
_base_ = './resnet18_cds_1xb128_cifar100.py'
model = dict(mode='off')
