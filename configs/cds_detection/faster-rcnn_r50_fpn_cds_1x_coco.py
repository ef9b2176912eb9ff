# Faster R-CNN R50-FPN, 1x COCO, with image-level CDS on the FPN levels
# P2-P5: SimCLR between the two views of each image, weight 0.1 per level.
_base_ = [
    'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py',
    '../_base_/cds/det_contrast_view.py',
]
custom_imports = dict(imports=['cds_mm'], allow_failed_imports=False)

detector = _base_.model
model = dict(
    _delete_=True,
    type='CDSDetector',
    mode='cds',  # 'off' gives the matching baseline
    detector=detector,
    cds_head=dict(
        type='CDSHead',
        taps=['neck.fpn_convs.0', 'neck.fpn_convs.1', 'neck.fpn_convs.2',
              'neck.fpn_convs.3'],
        in_channels=[256, 256, 256, 256],
        loss_weight=0.1,
        projector=dict(type='MLPProjector', num_convs=1, hid_channels=256,
                       out_channels=128),
        loss=dict(type='SupConLoss', temperature=0.07),
        use_labels=False))

# geometry is shared by both views; the 'cds' branch adds the colour recipe
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=_base_.backend_args),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=(1333, 800), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='MultiBranch', branch_field=['main', 'cds'],
         main=[dict(type='PackDetInputs')],
         cds=_base_.contrast_view + [dict(type='PackDetInputs')]),
]
# the base dataloader holds its own copy of the pipeline
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
