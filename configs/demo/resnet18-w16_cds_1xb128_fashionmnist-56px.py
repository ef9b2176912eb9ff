# Stage 1 of the CPU-scale CDS-pretrained detector (the paper's Table 4 route
# in small): the detection demo's backbone, ResNet-18 at 1/4 width with the
# standard stem (7x7 conv stride 2 + max pool), trained as a Fashion-MNIST
# classifier with CDS. Items are upsampled to 56 px, the middle of the item
# sizes the mosaic detector sees (24-64 px), so the last stage still has a
# 2x2 map. The detector's pixel normalisation, so that its backbone sees the
# inputs it was pretrained on. Export with tools/export_plain.py and load
# backbone.pth in faster-rcnn_r18-w16_fpn_cds-pretrained_fashion-mosaic.py;
# benchmarks/det_pretrained_backbone.py runs the chain. model.mode='off' gives
# the CE-pretrained arm.
_base_ = './resnet18-w16_cds_1xb128_fashionmnist.py'

model = dict(
    classifier=dict(
        backbone=dict(
            _delete_=True,
            type='ResNet',
            depth=18,
            stem_channels=16,
            base_channels=16,
            out_indices=(3, ),
            zero_init_residual=False,
            init_cfg=None),
        data_preprocessor=dict(
            mean=[123.675, 116.28, 103.53],
            std=[58.395, 57.12, 57.375],
            to_rgb=True)))

size = dict(type='Resize', scale=(56, 56))
task_view = [
    dict(type='RandomCrop', crop_size=28, padding=4),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'), size
]
contrast_view = task_view + _base_.contrast_colour
train_pipeline = [
    dict(
        type='MultiView',
        num_views=[1, 1],
        transforms=[task_view, contrast_view]),
    dict(type='PackInputs'),
]
test_pipeline = [size, dict(type='PackInputs')]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
