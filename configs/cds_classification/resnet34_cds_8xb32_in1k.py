# ResNet-34 on ImageNet with CDS, the ResNet-18 recipe. Paper Table 3 top-1:
# 73.17 -> 76.19.
_base_ = './resnet18_cds_8xb32_in1k.py'
model = dict(classifier=dict(backbone=dict(depth=34)))
