# A detector gains CDS by config alone: the _base_ line, the wrapper and a
# head with its taps. Image-level CDS on P3-P7 at weight 0.1, as the
# RetinaNet config (why: ../_base_/cds/coco_fpn_cds.py).
_base_ = [
    'mmdet::fcos/fcos_r50-caffe_fpn_gn-head_1x_coco.py',
    '../_base_/cds/coco_fpn_cds.py',
]
custom_imports = dict(
    imports=['cds_mm', 'cds_mm.compat'], allow_failed_imports=False)

model = dict(
    _delete_=True,
    type='CDSDetector',
    detector=_base_.model,
    # view 2's colour on the batch (the pipeline keeps only geometry)
    data_preprocessor=dict(
        type='MultiViewDetDataPreprocessor',
        data_preprocessor=_base_.model.data_preprocessor,
        view2_batch_augments=_base_.contrast_colour_batch),
    cds_head=_base_.fpn_cds_head_p3_p7)
# the data folder; CDS_DATA_ROOT=DIR in the environment overrides it
data_root = '{{$CDS_DATA_ROOT:data/coco}}'
train_dataloader = dict(
    dataset=dict(data_root=data_root, pipeline=_base_.cds_train_pipeline))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root +
                     '/annotations/instances_val2017.json')
test_evaluator = val_evaluator
