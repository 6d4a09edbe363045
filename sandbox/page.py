"""The sandbox's small web page: write as a customer on any channel, watch what was sent."""

from __future__ import annotations

import html

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from sandbox.core import SAY_CHANNELS

router = APIRouter(include_in_schema=False)

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Heliograph sandbox</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
 body{font:15px system-ui,sans-serif;max-width:760px;margin:2em auto;padding:0 1em;color:#222}
 form{display:flex;gap:.5em;flex-wrap:wrap;margin-bottom:1em}
 input,select,button{font:inherit;padding:.4em}
 #text{flex:1;min-width:14em}
 li{margin:.3em 0;padding:.4em;border-left:3px solid #4a7;background:#f6faf7;list-style:none}
 .meta{color:#777;font-size:85%}
</style></head><body>
<h1>Heliograph provider sandbox</h1>
<p>Write as a customer; Heliograph receives it exactly as the real provider would send it.
Replies sent by agents appear below (what the fake provider received).</p>
<form id="say">
 <select id="channel">{options}</select>
 <input id="from" value="1001" size="10" aria-label="customer id">
 <input id="text" placeholder="Type a message" aria-label="message">
 <button>Send</button>
</form>
<div id="result" class="meta"></div>
<h2>What the providers received</h2><ul id="calls"></ul>
<script>
document.getElementById('say').onsubmit = async (e) => {
  e.preventDefault();
  const ch = document.getElementById('channel').value;
  const r = await fetch('/_sandbox/say/' + ch, {method: 'POST',
    headers: {'Content-Type': 'application/json'},
    body: JSON.stringify({text: document.getElementById('text').value,
                          from: document.getElementById('from').value})});
  document.getElementById('result').textContent = r.status + ' ' + await r.text();
  document.getElementById('text').value = '';
};
async function refresh() {
  const calls = await (await fetch('/_sandbox/calls')).json();
  const ul = document.getElementById('calls');
  ul.innerHTML = '';
  for (const c of calls.slice(-30).reverse()) {
    const li = document.createElement('li');
    const text = c.params.text || JSON.stringify(c.params);
    li.innerHTML = '<div class="meta"></div><div></div>';
    li.children[0].textContent = c.provider + ' · ' + c.method + ' · ' +
      new Date(c.at * 1000).toLocaleTimeString();
    li.children[1].textContent = text;
    ul.appendChild(li);
  }
}
setInterval(refresh, 1500); refresh();
</script></body></html>"""


@router.get("/", response_class=HTMLResponse)
async def page() -> str:
    options = "".join(
        f'<option value="{html.escape(c)}">{html.escape(c)}</option>' for c in SAY_CHANNELS
    )
    return _PAGE.replace("{options}", options)
