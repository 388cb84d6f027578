"""Analysis of features, the third stage: ``transfer`` (transferability scores on arrays, each registered in
``registry``), ``project`` (projections and neighbourhoods on arrays), ``budget`` (memory budget, guarded calls),
``scoring`` (every score of one store under the budget), ``judge`` (ranks, accuracy, correlations), ``views``
(the pictures of one store), ``reports`` (tables and summary) and ``analyze`` (stores -> all of it)."""
