# Faster R-CNN R50-FPN, 1x COCO, with image-level CDS on P2-P5: SimCLR
# between the two views of each image, weight 0.1, negatives gathered across
# GPUs (why this head and weight: ../_base_/cds/coco_fpn_cds.py). The
# options: -img-ins (both heads at 0.01), -ins (the instance-level head
# alone), -proposal (FSCE's proposal-level head alone).
_base_ = [
    'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py',
    '../_base_/cds/coco_fpn_cds.py',
]
custom_imports = dict(
    imports=['cds_mm', 'cds_mm.compat'], allow_failed_imports=False)

model = dict(
    _delete_=True,
    type='CDSDetector',
    mode='cds',  # 'off' gives the matching baseline
    detector=_base_.model,
    # view 2's colour on the batch (the pipeline keeps only geometry)
    data_preprocessor=dict(
        type='MultiViewDetDataPreprocessor',
        data_preprocessor=_base_.model.data_preprocessor,
        view2_batch_augments=_base_.contrast_colour_batch),
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
