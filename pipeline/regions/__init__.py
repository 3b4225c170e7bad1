"""Regional HOI scoring (DEFR Sec. 3.4): box pairs -> CLS attention masks on the last ViT block(s).

``pairs`` turns detections into human-object pairs, ``masks`` turns boxes into patch masks,
``masked_vit`` runs the classifier with those masks (shared-prefix and naive reference paths),
``scoring`` turns pair logits into ``hoi_detections`` rows, ``scorer`` does all of it for a batch of
images, and ``actor_pool`` distributes it over a Ray Data actor pool.
"""
