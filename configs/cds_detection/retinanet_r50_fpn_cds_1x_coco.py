# RetinaNet R50-FPN, 1x COCO, with image-level CDS on P3-P5.
_base_ = [
    'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py',
    '../_base_/cds/det_contrast_view.py',
]
custom_imports = dict(imports=['cds_mm'], allow_failed_imports=False)

detector = _base_.model
model = dict(
    _delete_=True,
    type='CDSDetector',
    mode='cds',
    detector=detector,
    cds_head=dict(
        type='CDSHead',
        taps=['neck.fpn_convs.0', 'neck.fpn_convs.1', 'neck.fpn_convs.2'],
        in_channels=[256, 256, 256],
        loss_weight=0.1,
        projector=dict(type='MLPProjector', num_convs=1, hid_channels=256,
                       out_channels=128),
        loss=dict(type='SupConLoss', temperature=0.07),
        use_labels=False))

train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=_base_.backend_args),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=(1333, 800), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='MultiBranch', branch_field=['main', 'cds'],
         main=[dict(type='PackDetInputs')],
         cds=_base_.contrast_view + [dict(type='PackDetInputs')]),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
