# Plain ResNet-18 (1/4 width) trained on the same view-1 data and schedule.
_base_ = './resnet18-w16_cds_1xb128_fashionmnist.py'
model = dict(mode='off')
