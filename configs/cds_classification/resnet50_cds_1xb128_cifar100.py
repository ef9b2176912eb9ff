# ResNet-50 (CIFAR stem) on CIFAR-100 with CDS. Paper Table 1: 77.81 -> 81.31.
_base_ = './resnet18_cds_1xb128_cifar100.py'
model = dict(
    classifier=dict(backbone=dict(depth=50), head=dict(in_channels=2048)))
