# ResNet-50 CDS on ImageNet with view 2 at half size (112 px): the cheaper
# CDS. On Fashion-MNIST (ResNet-18 at 1/4 width, 3 seeds) it kept CDS's test
# top-1 (90.38 +/- 0.11 against 90.54 +/- 0.14) at 1.77x the baseline's
# training step against 2.44x (benchmarks/README.md); not run on ImageNet.
_base_ = './resnet50_cds_8xb32_in1k.py'
model = dict(view2_scale=0.5)
