# The demo's plain detector, no wrapper: what tools/export_plain.py's
# plain.pth loads into (tools/test.py gives the same mAP as the CDS
# checkpoint). Train pipeline: the upstream single-view one.
_base_ = './faster-rcnn_r18-w16_fpn_cds_shapes.py'

model = dict(_delete_=True, **_base_.detector)
train_dataloader = dict(
    dataset=dict(pipeline=[
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations', with_bbox=True),
        dict(type='Resize', scale=(128, 128), keep_ratio=True),
        dict(type='RandomFlip', prob=0.5),
        dict(type='PackDetInputs'),
    ]))
