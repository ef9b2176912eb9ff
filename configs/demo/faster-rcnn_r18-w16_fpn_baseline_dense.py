# The dense demo's baseline: the same detector, data and schedule without CDS.
_base_ = './faster-rcnn_r18-w16_fpn_cds_dense.py'
model = dict(mode='off')
