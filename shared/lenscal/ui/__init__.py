"""`lenscal ui`: a read-only web application over the registry and the results roots.

``roots`` (which files may be shown, and their URLs: also used by the flows' Prefect
artifacts), ``render`` (markdown without raw HTML), ``lineage`` (the record graph as SVG),
``results`` (what a results directory holds, by kind), ``guard`` (headers and the token),
``app`` (the Starlette routes)."""
