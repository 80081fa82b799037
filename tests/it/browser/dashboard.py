"""Drive a follower's dashboard in headless Chromium while a job runs (tests/it/dashboard.rs).

argv: URL JOB_ID JOB_NAME SCREENSHOT_DIR. Prints SUCCEEDED once the job page shows the job
succeeded, then reads `KILLED <leader id>` from stdin and prints `NEW_LEADER <id>` once the
page names another leader. Exits non-zero with the reason on any failed check.
"""
import sys

from selenium.webdriver.common.by import By

from chromium import start, wait

TOKEN_MODE = sys.argv[1] == "token"
if TOKEN_MODE:
    url, token = sys.argv[2:4]
else:
    url, job, name, shots = sys.argv[1:5]


driver = start()
try:
    if TOKEN_MODE:
        # A node with --api-token: the page asks once, then shows the cluster.
        driver.get(url + "/#/")
        alert = wait("the token prompt", lambda: driver.switch_to.alert, limit=30)
        alert.send_keys(token)
        alert.accept()
        wait("the cluster behind the token",
             lambda: driver.find_element(By.ID, "cluster").text not in ("", "…", "none yet"), limit=30)
        driver.refresh()
        wait("the cluster after a reload, without asking again",
             lambda: driver.find_element(By.ID, "cluster").text not in ("", "…", "none yet"), limit=30)
        print("TOKEN_OK", flush=True)
        sys.exit(0)

    driver.get(url + "/#/")

    def progress():
        row = driver.find_element(By.CSS_SELECTOR, f'[data-job="{job}"]').find_element(By.XPATH, "../..")
        cells = row.find_elements(By.TAG_NAME, "td")
        # job, name, owner, state, maps, ...
        done, total = cells[4].text.split()[-1].split("/")
        return cells, int(done), int(total), cells[3].text

    first = wait("the job in the jobs list", progress)
    seen = [first[1]]
    # The name is shown as text: markup in it is neither rendered nor run.
    if first[0][1].text != name:
        sys.exit(f"the job's name shows as {first[0][1].text!r}, not {name!r}")
    if driver.execute_script("return window.pwned") is not None:
        sys.exit("a script in the job's name ran")

    def rose():
        _, done, total, state = progress()
        seen.append(done)
        return state == "succeeded" or done > seen[0]

    wait("map progress to rise", rose)
    wait("the job to succeed in the list", lambda: progress()[3] == "succeeded")
    if max(seen) <= min(seen) and min(seen) != progress()[2]:
        sys.exit(f"progress never rose: {seen}")
    # A follower shows every node's heartbeat (slots busy/total), not just its own.
    def slots_known():
        rows = driver.find_elements(By.CSS_SELECTOR, "#nodes tr")[1:]
        # node, member, role, service, reachable, last heartbeat, running, slots, ...
        cells = [r.find_elements(By.TAG_NAME, "td")[7].text for r in rows]
        return len(cells) == 3 and all("/" in c for c in cells)

    wait("every node's slots on the follower's page", slots_known, limit=30)
    driver.save_screenshot(f"{shots}/cluster.png")

    driver.get(url + f"/#/job/{job}")
    wait("the job page", lambda: driver.find_element(By.ID, "job-state").text == "succeeded")
    segs = driver.find_elements(By.CSS_SELECTOR, "#timeline .seg.done")
    if not segs:
        sys.exit("the job page has no attempts in its timeline")
    driver.save_screenshot(f"{shots}/job.png")

    # An unknown job: the page says so.
    driver.get(url + "/#/job/j-nosuchjob")
    wait("the unknown job's error", lambda: "no job" in driver.find_element(By.ID, "job-error").text.lower()
         or "not found" in driver.find_element(By.ID, "job-error").text.lower())

    # A bad form: refused with the node's reason, shown as text.
    driver.get(url + "/#/")
    wait("the submit form", lambda: driver.find_element(By.ID, "submit"))
    driver.find_element(By.CSS_SELECTOR, "#submit button").click()
    wait("the refusal", lambda: driver.find_element(By.ID, "submit-result").text.startswith("refused"))

    old_leader = driver.find_element(By.ID, "leader").get_attribute("data-leader")
    print("SUCCEEDED", old_leader, flush=True)
    line = sys.stdin.readline().split()
    if line[:1] != ["KILLED"]:
        sys.exit(f"expected KILLED, got {line}")
    killed = line[1]
    new = wait("the page to name a new leader",
               lambda: (lambda l: l if l and l != killed else None)(
                   driver.find_element(By.ID, "leader").get_attribute("data-leader")), limit=60)
    driver.save_screenshot(f"{shots}/failover.png")
    print("NEW_LEADER", new, flush=True)
finally:
    driver.quit()
