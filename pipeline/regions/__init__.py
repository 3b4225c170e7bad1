"""Regional HOI scoring (DEFR Sec. 3.4): box pairs -> CLS attention masks on the last ViT block(s).

``pairs`` turns detections into human-object pairs, ``masks`` turns boxes into patch masks,
``masked_vit`` runs the classifier with those masks (shared-prefix and naive reference paths),
``scoring`` turns pair logits into ``hoi_detections`` rows (gated by the model's own label space), and
``scorer`` does all of it for a batch of images. The inference engine runs it over many images
(:mod:`pipeline.inference.pair_predictor`).
"""
