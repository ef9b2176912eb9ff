# Faster R-CNN R50-FPN, 1x COCO, with image-level CDS on the FPN levels
# P2-P5: SimCLR between the two views of each image, weight 0.1 per level.
_base_ = [
    'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py',
    '../_base_/cds/coco_fpn_cds.py',
]
custom_imports = dict(imports=['cds_mm'], allow_failed_imports=False)

model = dict(
    _delete_=True,
    type='CDSDetector',
    mode='cds',  # 'off' gives the matching baseline
    detector=_base_.model,
    # view 2's colour on the batch (the pipeline keeps only geometry)
    data_preprocessor=dict(
        type='BranchBatchAugmentsDataPreprocessor',
        data_preprocessor=_base_.model.data_preprocessor,
        branch_batch_augments=dict(cds=_base_.contrast_colour_batch)),
    cds_head=dict(
        _base_.fpn_cds_head,
        taps=[
            'neck.fpn_convs.0', 'neck.fpn_convs.1', 'neck.fpn_convs.2',
            'neck.fpn_convs.3'
        ],
        in_channels=[256, 256, 256, 256]))
# the base dataloader holds its own copy of the pipeline
# the data folder; CDS_DATA_ROOT=DIR in the environment overrides it
data_root = '{{$CDS_DATA_ROOT:data/coco}}'
train_dataloader = dict(
    dataset=dict(data_root=data_root, pipeline=_base_.cds_train_pipeline))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root +
                     '/annotations/instances_val2017.json')
test_evaluator = val_evaluator
