"""Intelligent intake (智能派单): the category classifier, its data and its model files.

``data`` loads, de-duplicates and splits the labelled Teddy Cup messages; ``classifier`` trains,
predicts and evaluates; ``model_store`` saves and loads a model file with its metadata.
"""
