# The paper's Table 4 setting: a plain Faster R-CNN whose ResNet-50 starts from
# a CDS-trained ImageNet classifier. Make the file with   python
# tools/export_plain.py configs/cds_classification/resnet50_cds_8xb32_in1k.py \
# work_dirs/resnet50_cds_8xb32_in1k/epoch_90.pth --out-dir
# work_dirs/resnet50_cds_export which writes plain.pth (full classifier) and
# backbone.pth (keys 'backbone.*').
_base_ = 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'

model = dict(
    backbone=dict(
        init_cfg=dict(
            type='Pretrained',
            prefix='backbone.',
            checkpoint='work_dirs/resnet50_cds_export/backbone.pth')))
# the data folder; CDS_DATA_ROOT=DIR in the environment overrides it
data_root = '{{$CDS_DATA_ROOT:data/coco}}'
train_dataloader = dict(dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root +
                     '/annotations/instances_val2017.json')
test_evaluator = val_evaluator
