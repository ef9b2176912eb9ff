# Image-level CDS on FPN levels for COCO detectors: the two-view train
# pipeline (geometry shared by both views) and the head template. The colour
# recipe of the 'cds' branch runs on the batch, on the model's device
# (contrast_colour_batch, exact per image): configs pass it to
# BranchBatchAugmentsDataPreprocessor and set the taps and channels.
_base_ = ['./contrast_colour_batch.py', './check_finite_loss.py']

cds_train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=(1333, 800), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(
        type='MultiBranch',
        branch_field=['main', 'cds'],
        main=[dict(type='PackDetInputs')],
        cds=_base_.contrast_colour + [dict(type='PackDetInputs')]),
]
fpn_cds_head = dict(
    type='CDSHead',
    loss_weight=0.1,
    projector=dict(
        type='MLPProjector', num_convs=1, hid_channels=256, out_channels=128),
    loss=dict(type='SupConLoss', temperature=0.07),
    use_labels=False)
# The CDS loss weights ramp from 0 to their value over the first 500
# iterations, as the learning rate does in the mmdet 1x schedules, so the
# contrastive terms do not pull on the detector before its own losses settle.
custom_hooks = _base_.custom_hooks + [
    dict(type='CDSWeightHook', warmup_iters=500)
]
