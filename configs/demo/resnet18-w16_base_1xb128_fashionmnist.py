_base_ = './resnet18-w16_cds_1xb128_fashionmnist.py'
model = dict(mode='off')
