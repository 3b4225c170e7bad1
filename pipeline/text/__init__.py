"""Language embeddings of the class prompts (DEFR's classifier initialisation); only the embed_text stage
uses this package.

- :mod:`pipeline.text.prompts`: one prompt per class from the classes table (templates, free text, a file).
- :mod:`pipeline.text.encoders`: open_clip / transformers / sentence-transformers text encoders.
- :mod:`pipeline.text.cache`: the content-addressed embedding cache (local or a team bucket).
- :mod:`pipeline.text.embedding_plots`: paper Fig. 1, t-SNE of the class embeddings.
(Model files on local disk or fsspec URIs, their fingerprints and local copies, are in
:mod:`pipeline.storage.model_files`: the classifier's pretrained weights use them too.)
"""
