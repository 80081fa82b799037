"""A page of another site tries to run a job on a node, in headless Chromium (tests/it/http_guard.rs).

argv: NODE_URL MARKER_FETCH MARKER_FORM INPUT_FILE. Serves an attack page from
http://127.0.0.2:PORT/ (another origin than the node's 127.0.0.1) that submits a job whose
mapper would create MARKER_FETCH with `fetch(..., {mode: "no-cors", body: FormData})`, and one
whose mapper would create MARKER_FORM with a multipart form post. Prints `ATTACKED <text the
form post got back>`, then submits a word count of INPUT_FILE from the node's own dashboard and
prints `OWN <job id>`. Exits non-zero with the reason on any failed step.
"""
import http.server
import json
import sys
import threading

from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from chromium import start, wait

node, marker_fetch, marker_form, input_file = sys.argv[1:5]


def spec(marker):
    return json.dumps({
        "name": "from-a-page",
        "inputs": ["in.txt"],
        "reducers": 1,
        "kind": {"Streaming": {"map": {"Shell": f"touch {marker}; cat"},
                               "reduce": {"Shell": "cat"}, "combine": None}},
    })


PAGE = f"""<!doctype html><title>loading</title>
<form id="f" method="POST" enctype="multipart/form-data" action="{node}/api/v1/jobs">
<input name="spec" value='{spec(marker_form)}'><input type="file" name="input"></form>
<script>
async function attack() {{
  const fd = new FormData();
  fd.append("spec", new Blob([{json.dumps(spec(marker_fetch))}], {{ type: "application/json" }}));
  fd.append("input", new Blob(["hello page\\n"]), "in.txt");
  try {{
    await fetch("{node}/api/v1/jobs", {{ method: "POST", mode: "no-cors", body: fd }});
  }} catch (e) {{}}
  const dt = new DataTransfer();
  dt.items.add(new File(["hello form\\n"], "in.txt"));
  const f = document.getElementById("f");
  f.elements.input.files = dt.files;
  document.title = "fetched";
  f.submit();
}}
attack();
</script>"""


class Page(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = PAGE.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


server = http.server.HTTPServer(("127.0.0.2", 0), Page)
threading.Thread(target=server.serve_forever, daemon=True).start()
page = f"http://127.0.0.2:{server.server_address[1]}/"


driver = start()
try:
    driver.get(page)
    # The form post navigates the tab to the node's answer.
    wait("the form post's answer", lambda: driver.current_url.startswith(node))
    answer = wait("the answer's text", lambda: driver.find_element(By.TAG_NAME, "body").text)
    print("ATTACKED", " ".join(answer.split()), flush=True)

    # The same browser on the node's own dashboard: a job submitted there runs.
    driver.get(node + "/#/")
    form = wait("the submit form", lambda: driver.find_element(By.ID, "submit"))
    Select(form.find_element(By.NAME, "app")).select_by_value("wordcount")
    form.find_element(By.NAME, "files").send_keys(input_file)
    form.find_element(By.TAG_NAME, "button").click()
    link = wait("the submitted job",
                lambda: driver.find_element(By.CSS_SELECTOR, "#submit-result a").text)
    print("OWN", link.split()[-1], flush=True)
finally:
    driver.quit()
    server.shutdown()
