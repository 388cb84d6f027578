"""Analysis of features, the third stage: ``transfer`` (transferability scores on arrays), ``project``
(projections and neighbourhoods on arrays), ``views`` (their files for one store) and ``analyze``
(stores -> scores, views, summary)."""
