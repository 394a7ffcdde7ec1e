"""The host's own pages, one feature in one folder: sign in with a one-time link, the week
view `/me` with manual blocks by the hour, and the sync log `/me/log` (and `/me/log.csv`).

Server-rendered; one script (static/host.js) adds drag-select, the "why is this free"
popover and a self-refresh of the live part every few seconds, and every action also works
as a plain form with JavaScript off (POST, then redirect, then GET). The signed-in host is
the only host these pages know: a block id of another host answers 404, like an unknown one.
No script runs inline (Content-Security-Policy), and no token is ever in a URL after the
sign-in link itself.

Modules: common.py (the blueprint, headers, error pages, the signed-in host), sign_in.py,
week.py (/me, /me/live, /me/explain, the booking-tool password), block_form.py and blocks.py
(manual blocks), log_page.py (/me/log, /me/log.csv).
"""

from webhook.host_pages import blocks, log_page, sign_in, week  # noqa: F401  (register views)
from webhook.host_pages.common import host_pages

__all__ = ["host_pages"]
