# ResNet-50 on ImageNet with CDS, the ResNet-18 recipe; the SepConv heads
# reach 2048 channels (Bottleneck). Paper Table 3 top-1: 75.30 -> 78.25.
_base_ = './resnet18_cds_8xb32_in1k.py'
model = dict(
    classifier=dict(backbone=dict(depth=50), head=dict(in_channels=2048)))
