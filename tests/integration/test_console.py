"""The web console (issue #26) driven in headless Chromium (Debian's chromium and chromium-driver, through Debian's
python3-selenium), as a person uses it: sign in with an access key (the server requires signatures, so every call the
page makes is SigV4-signed in the browser), create a function, invoke it with a saved test event, see its log line
and a chart point, redrive a failed async event, upload and download an object, browse every main page with no
console errors, and move around with the keyboard.

Screenshots of the main pages go to LAMINA_CONSOLE_SCREENSHOTS (docs/console/ holds the committed ones, taken once
with LAMINA_CONSOLE_SCREENSHOTS=docs/console); by default to a temp dir, so runs never rewrite committed files."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest
import uuid
from pathlib import Path

import boto3
import botocore.auth
import botocore.awsrequest
import botocore.credentials
import requests
from botocore.config import Config

import lamina_harness as h

try:
    import selenium  # noqa: F401
except ImportError:
    # Debian's python3-selenium (pure Python) lives beside Debian's interpreter; this one is the same 3.11.
    sys.path.append("/usr/lib/python3/dist-packages")
try:
    from selenium import webdriver
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select
except ImportError:  # test.sh installs it; reported as a skip when run alone on a machine without it
    webdriver = None

MODULE = __name__
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# The flags that keep Chromium quiet on a machine with no network but loopback.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1280,860", "--lang=en-US"]
WAIT = 30.0

_root: Path | None = None
_server: h.LaminaServer | None = None
_key: dict = {}
_browser = None
_shots: Path | None = None
_temp_shots: Path | None = None

FAILING_PY = '''
import os

def handler(event, context):
    print("RAN", event.get("id"), "FAIL=" + os.environ.get("FAIL", ""), flush=True)
    if os.environ.get("FAIL") == "1":
        raise RuntimeError("failing on purpose: " + str(event.get("id")))
    return {"ok": event.get("id")}
'''


def setUpModule():
    global _root, _server, _key, _browser, _shots, _temp_shots
    if os.environ.get("LAMINA_TEST_ENDPOINT", "").strip():
        raise unittest.SkipTest("needs a server of its own (with an access key)")
    if webdriver is None or not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        raise unittest.SkipTest("needs Debian's chromium, chromium-driver and python3-selenium (test.sh installs them)")
    _root = Path(tempfile.mkdtemp(prefix="lamina-it-console-"))
    created = subprocess.run([str(h.REPO_ROOT / "lamina"), "keys", "create", "--data", str(_root / "data")],
                             capture_output=True, text=True, timeout=300)
    assert created.returncode == 0, created.stderr
    _key = json.loads(created.stdout)
    _server = h.LaminaServer("console", ["--async-retry-delay", "1"], data_dir=_root / "data").start()
    configured = os.environ.get("LAMINA_CONSOLE_SCREENSHOTS", "").strip()
    if configured:
        _shots = Path(configured) if Path(configured).is_absolute() else h.REPO_ROOT / configured
    else:
        _shots = _temp_shots = Path(tempfile.mkdtemp(prefix="lamina-console-shots-"))
    _shots.mkdir(parents=True, exist_ok=True)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument("--user-data-dir=" + str(_root / "chromium"))
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    _browser = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    _browser.set_page_load_timeout(60)


def tearDownModule():
    if _browser is not None:
        _browser.quit()
    if _server is not None:
        _server.stop()
    if _root is not None and os.environ.get("LAMINA_KEEP_DATA") != "1":
        shutil.rmtree(_root, ignore_errors=True)
    if _temp_shots is not None:
        print(f"\ntest_console: screenshots in {_temp_shots}", file=sys.stderr)


class ConsoleTestCase(h.LaminaTestCase):
    """A browser signed in to the module's server; boto3 clients signed with the same key."""

    @classmethod
    def setUpClass(cls):
        cls._own_server = _server  # the harness appends its output to failures

    @property
    def browser(self):
        return _browser

    @property
    def url(self) -> str:
        return _server.url

    def aws(self, service: str):
        return boto3.client(service, endpoint_url=self.url, region_name=h.REGION,
                            aws_access_key_id=_key["AccessKeyId"], aws_secret_access_key=_key["SecretAccessKey"],
                            config=Config(retries={"max_attempts": 0}, read_timeout=60))

    @property
    def lam(self):
        return self.aws("lambda")

    def operator(self, method: str, path: str) -> requests.Response:
        """The operator API, signed as `lamina events` signs it (service lamina)."""
        request = botocore.awsrequest.AWSRequest(method=method, url=self.url + path, data=b"")
        botocore.auth.SigV4Auth(botocore.credentials.Credentials(_key["AccessKeyId"], _key["SecretAccessKey"]),
                                "lamina", h.REGION).add_auth(request)
        return requests.request(method, self.url + path, headers=dict(request.headers.items()), timeout=30)

    # ---- the browser ------------------------------------------------------------------------
    def open(self, route: str = "/functions") -> None:
        """Shows #route, signing in first if this tab has no credentials yet."""
        self.browser.get(f"{self.url}/console/#{route}")
        self.wait_for(lambda: self.find("#main h1"), f"a page at {route}")
        if self.find("#sign-in") is not None:
            self.sign_in(_key["SecretAccessKey"])
            self.browser.get(f"{self.url}/console/#{route}")
        self.wait_for(lambda: self.find("#main h1") is not None and self.find("#sign-in") is None, f"page {route}")

    def sign_in(self, secret: str) -> None:
        self.wait_for(lambda: self.find("#access-key-id"), "the sign-in form")
        for field, value in (("#access-key-id", _key["AccessKeyId"]), ("#secret-access-key", secret)):
            element = self.find(field)
            element.clear()
            element.send_keys(value)
        self.find("#sign-in").click()

    def find(self, css: str):
        try:
            return self.browser.find_element(By.CSS_SELECTOR, css)
        except NoSuchElementException:
            return None

    def find_all(self, css: str):
        return self.browser.find_elements(By.CSS_SELECTOR, css)

    def text(self, css: str = "#main") -> str:
        element = self.find(css)
        return element.text if element is not None else ""

    def wait_for(self, condition, what: str, timeout: float = WAIT, every=None):
        """Polls `condition` until it is truthy (then returns it); `every` runs between polls (a refresh)."""
        deadline = time.monotonic() + timeout
        last_error = None
        while time.monotonic() < deadline:
            try:
                value = condition()
                if value:
                    return value
            except (StaleElementReferenceException, NoSuchElementException) as e:  # the page re-rendered meanwhile
                last_error = e
            if every is not None:
                every()
            time.sleep(0.2)
        self.fail(f"timed out after {timeout:.0f} s waiting for {what}; page says:\n{self.text()[:2000]}\n{last_error or ''}")

    def console_errors(self) -> list[str]:
        """SEVERE entries of the browser's console since the last call (JavaScript errors, failed requests)."""
        return [e["message"] for e in self.browser.get_log("browser") if e["level"] == "SEVERE"]

    def assertNoConsoleErrors(self, where: str) -> None:
        errors = self.console_errors()
        self.assertEqual(errors, [], f"console errors on {where}")

    def screenshot(self, name: str) -> None:
        self.browser.save_screenshot(str(_shots / f"{name}.png"))

    def invoke_button(self, css: str):
        button = self.wait_for(lambda: self.find(css), css)
        button.click()


class ConsoleFunctionTests(ConsoleTestCase):

    def test_create_invoke_see_the_log_line_and_a_chart_point(self):
        self.open("/functions")
        self.console_errors()
        name = self.fn_name()
        self.addCleanup(self._delete_quietly, name)
        marker = f"marker-{uuid.uuid4().hex[:8]}"

        # Create: the form zips the code typed into it; the handler prints the event's marker.
        self.find("#create-function").click()
        self.wait_for(lambda: self.find("#function-name"), "the create form")
        self.find("#function-name").send_keys(name)
        Select(self.find("#runtime")).select_by_value("python3.12")
        code = self.find("#code")
        code.clear()
        code.send_keys('def lambda_handler(event, context):\n'
                       '    print("saw", event["marker"])\n'
                       '    return {"echo": event["marker"]}\n')
        self.find("#create").click()
        self.wait_for(lambda: self.browser.current_url.endswith(f"/functions/{name}/test"), "the function's Test tab")
        created = self.lam.get_function_configuration(FunctionName=name)
        self.assertEqual((created["Runtime"], created["Handler"]), ("python3.12", "lambda_function.lambda_handler"))

        # A saved test event, then an invoke with it.
        editor = self.wait_for(lambda: self.find("#event-json"), "the event editor")
        editor.clear()
        editor.send_keys(json.dumps({"marker": marker}))
        self.find("#event-name").clear()
        self.find("#event-name").send_keys("mine")
        self.find("#save-event").click()
        self.browser.refresh()
        self.wait_for(lambda: self.find("#saved-events") and "mine" in [o.text for o in Select(self.find("#saved-events")).options], "the saved event")
        self.find("#event-json").clear()
        Select(self.find("#saved-events")).select_by_visible_text("mine")
        self.assertEqual(json.loads(self.find("#event-json").get_attribute("value")), {"marker": marker})
        self.find("#invoke").click()
        result = self.wait_for(lambda: self.text("#invoke-result"), "the invoke result", timeout=60)
        self.assertIn("Succeeded", result)
        self.assertEqual(json.loads(self.text("#invoke-response")), {"echo": marker})
        self.assertRegex(result, r"Duration\n[\d.]+ ms")
        self.assertRegex(result, r"Billed duration\n\d+ ms")
        self.assertRegex(result, r"Memory\n\d+ MB used of 128 MB")
        self.assertIn(f"saw {marker}", self.text("#invoke-log"))
        self.assertRegex(self.text("#invoke-log"), r"REPORT RequestId: [0-9a-f-]{36}\s+Duration")
        self.screenshot("function-test")
        self.assertNoConsoleErrors("the create form and the Test tab")

        # The log line in the live log view, found with a filter pattern too.
        self.find('.tabs a[data-tab="logs"]').click()
        self.wait_for(lambda: f"saw {marker}" in self.text("#log-events"), "the function's log line in Logs")
        filter_box = self.find("#log-filter")
        filter_box.send_keys(f'"{marker}"', Keys.ENTER)
        self.wait_for(lambda: self.text("#log-state").startswith("1 events"), "one event matching the filter")
        self.assertIn(f"saw {marker}", self.text("#log-events"))
        self.assertNotIn("REPORT", self.text("#log-events"))
        self.screenshot("function-logs")

        # A chart point: this minute's invocation.
        self.find('.tabs a[data-tab="monitor"]').click()
        point = self.wait_for(lambda: self.find('figure[data-chart="Invocations"] circle[data-series="Invocations"]'),
                              "a point on the Invocations chart", every=lambda: self.find("#refresh-charts") and self.find("#refresh-charts").click())
        self.assertGreaterEqual(float(point.get_attribute("data-value")), 1)
        self.assertIsNotNone(self.find('figure[data-chart="Duration"] circle[data-series="p50"]'))
        self.assertIsNotNone(self.find('figure[data-chart="Cold starts"] circle'))
        self.screenshot("function-monitor")

        # The list shows it with its invocations in the last hour.
        self.find('#nav a[data-section="functions"]').click()
        row = self.wait_for(lambda: [r for r in self.find_all("#functions tbody tr") if r.text.startswith(name)], "the function in the list")[0]
        cells = [c.text for c in row.find_elements(By.CSS_SELECTOR, "td")]
        self.assertEqual((cells[1], cells[2], cells[4], cells[5]), ("python3.12", "128 MB", "1", "0"))
        self.assertNoConsoleErrors("Logs, Monitor and the function list")

    def test_alias_weights_and_reserved_concurrency_are_edited_in_the_page(self):
        name = self.create_function(h.make_zip({"app.py": "def handler(e, c):\n    return 1\n"}))["FunctionName"]
        first = self.lam.publish_version(FunctionName=name)["Version"]
        self.lam.update_function_configuration(FunctionName=name, Description="second")
        self.wait_active(name)
        second = self.lam.publish_version(FunctionName=name)["Version"]
        self.lam.create_alias(FunctionName=name, Name="live", FunctionVersion=first)

        self.open(f"/functions/{name}/versions")
        row = self.wait_for(lambda: self.find('#aliases tr[data-alias="live"]'), "the alias row")
        Select(row.find_element(By.CSS_SELECTOR, 'select[aria-label="live second version"]')).select_by_value(second)
        weight = row.find_element(By.CSS_SELECTOR, "input.weight")
        weight.clear()
        weight.send_keys("30")
        row.find_element(By.CSS_SELECTOR, "button").click()
        self.wait_for(lambda: self.lam.get_alias(FunctionName=name, Name="live").get("RoutingConfig", {}).get("AdditionalVersionWeights") == {second: 0.3},
                      "the alias's new weights")
        self.assertEqual(self.lam.get_alias(FunctionName=name, Name="live")["FunctionVersion"], first)

        self.open(f"/functions/{name}/concurrency")
        reserved = self.wait_for(lambda: self.find("#reserved"), "the reserved concurrency field")
        reserved.send_keys("5")
        self.find("#save-reserved").click()
        self.wait_for(lambda: self.lam.get_function_concurrency(FunctionName=name).get("ReservedConcurrentExecutions") == 5, "the reservation")
        self.browser.refresh()
        self.wait_for(lambda: self.find("#reserved") and self.find("#reserved").get_attribute("value") == "5", "the reservation shown")
        self.find("#reserved").clear()
        self.find("#save-reserved").click()
        self.wait_for(lambda: "ReservedConcurrentExecutions" not in self.lam.get_function_concurrency(FunctionName=name), "the reservation removed")
        self.assertNoConsoleErrors("versions, aliases and concurrency")

    def test_redrive_a_failed_async_event(self):
        name = self.create_function(h.make_zip({"app.py": FAILING_PY}), Environment={"Variables": {"FAIL": "1"}})["FunctionName"]
        self.lam.put_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=0)
        event_id = uuid.uuid4().hex[:8]

        self.open(f"/functions/{name}/test")
        editor = self.wait_for(lambda: self.find("#event-json"), "the event editor")
        editor.clear()
        editor.send_keys(json.dumps({"id": event_id}))
        self.find("#invoke-async").click()
        self.wait_for(lambda: "Queued" in self.text("#invoke-result"), "the 202 of an async invoke")
        self.assertIn("Status\n202", self.text("#invoke-result"))

        # The failed event, with its error, in the queue's Failed view.
        self.open("/async?state=failed")
        row = self.wait_for(lambda: [r for r in self.find_all('#async-events tr[data-state="failed"]') if name in r.text],
                            "the failed event", timeout=60, every=lambda: self.browser.refresh())[0]
        self.assertIn(f"failing on purpose: {event_id}", row.text)
        self.assertIn("RetriesExhausted", row.text)
        self.screenshot("async-queue")

        # Fix the function through the console (its environment), then redrive the event from the queue.
        self.open(f"/functions/{name}/overview")
        value = self.wait_for(lambda: [v for v in self.find_all("#environment .env-value")], "the environment editor")[0]
        self.assertEqual(value.get_attribute("value"), "1")
        value.clear()
        value.send_keys("0")
        self.find("#save-env").click()
        self.wait_for(lambda: self.lam.get_function_configuration(FunctionName=name)["Environment"]["Variables"] == {"FAIL": "0"},
                      "the saved environment")
        self.open("/async?state=failed")
        event = self.wait_for(lambda: [r for r in self.find_all('#async-events tr[data-state="failed"]') if name in r.text], "the failed event")[0]
        event_key = event.get_attribute("data-event")
        event.find_element(By.CSS_SELECTOR, "button.redrive").click()
        self.wait_for(lambda: self.operator("GET", f"/lamina/v1/async-events?function={name}").json()["Events"] == [],
                      "the redriven event to run and leave the queue", timeout=60)
        logs = self.aws("logs")
        self.wait_for(lambda: any(f"RAN {event_id} FAIL=0" in e["message"] for e in logs.filter_log_events(logGroupName=f"/aws/lambda/{name}")["events"]),
                      "the redriven run's log line")
        self.wait_for(lambda: self.find("#async-empty") or event_key not in [r.get_attribute("data-event") for r in self.find_all("#async-events tr")],
                      "the event gone from the Failed view", every=lambda: self.browser.refresh())
        self.assertNoConsoleErrors("the async queue")


class ConsolePagesTests(ConsoleTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.suffix = uuid.uuid4().hex[:6]

    def test_every_main_page_renders_without_console_errors(self):
        s = self.suffix
        name = self.create_function(h.make_zip({"app.py": "def handler(e, c):\n    print('page', e)\n    return e\n"}))["FunctionName"]
        arn = self.lam.get_function_configuration(FunctionName=name)["FunctionArn"]
        self.lam.invoke(FunctionName=name, Payload=b'{"hello": "console"}')
        version = self.lam.publish_version(FunctionName=name)["Version"]
        self.lam.create_alias(FunctionName=name, Name="live", FunctionVersion=version)
        sqs = self.aws("sqs")
        queue_url = sqs.create_queue(QueueName=f"orders-{s}")["QueueUrl"]
        sqs.send_message(QueueUrl=queue_url, MessageBody='{"order": 1}')
        sns = self.aws("sns")
        topic = sns.create_topic(Name=f"alerts-{s}")["TopicArn"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=f"arn:aws:sqs:{h.REGION}:{h.ACCOUNT}:orders-{s}")
        events = self.aws("events")
        events.put_rule(Name=f"hourly-{s}", ScheduleExpression="rate(1 hour)")
        events.put_targets(Rule=f"hourly-{s}", Targets=[{"Id": "fn", "Arn": arn}])
        self.lam.add_permission(FunctionName=name, StatementId="s3", Action="lambda:InvokeFunction",
                                Principal="s3.amazonaws.com", SourceArn=f"arn:aws:s3:::photos-{s}")
        s3 = self.aws("s3")
        s3.create_bucket(Bucket=f"photos-{s}")
        s3.put_object(Bucket=f"photos-{s}", Key="2026/cat.txt", Body=b"meow")
        s3.put_object(Bucket=f"photos-{s}", Key="readme.txt", Body=b"hello")
        s3.put_bucket_notification_configuration(Bucket=f"photos-{s}", NotificationConfiguration={
            "LambdaFunctionConfigurations": [{"LambdaFunctionArn": arn, "Events": ["s3:ObjectCreated:*"]}]})
        ddb = self.aws("dynamodb")
        ddb.create_table(TableName=f"tasks-{s}", KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                         AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST")
        for i in range(6):
            ddb.put_item(TableName=f"tasks-{s}", Item={"id": {"S": f"t{i}"}, "status": {"S": "open" if i % 2 else "done"}, "n": {"N": str(i)}})
        api = self.aws("apigatewayv2").create_api(Name=f"shop-{s}", ProtocolType="HTTP", Target=arn)
        cfn = self.aws("cloudformation")
        cfn.create_stack(StackName=f"shop-stack-{s}", Parameters=[{"ParameterKey": "Stage", "ParameterValue": "beta"}], TemplateBody=json.dumps({
            "Parameters": {"Stage": {"Type": "String"}},
            "Resources": {"Jobs": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": {"Fn::Sub": "jobs-${Stage}-" + s}}}},
            "Outputs": {"JobsUrl": {"Value": {"Ref": "Jobs"}}}}))
        deadline = time.monotonic() + 60
        while cfn.describe_stacks(StackName=f"shop-stack-{s}")["Stacks"][0]["StackStatus"] != "CREATE_COMPLETE":
            self.assertLess(time.monotonic(), deadline, "the stack was not created within 60 s")
            time.sleep(0.2)

        self.open("/functions")
        self.console_errors()
        pages = [
            ("/functions", "functions", lambda: name in self.text("#functions")),
            (f"/functions/{name}/overview", "function-configuration", lambda: arn in self.text()),
            (f"/functions/{name}/versions", "function-versions", lambda: self.find('#aliases tr[data-alias="live"]')),
            (f"/functions/{name}/concurrency", "function-concurrency", lambda: "Running now" in self.text()),
            (f"/functions/{name}/triggers", "function-triggers",
             lambda: f"photos-{s}" in self.text() and f"hourly-{s}" in self.text() and api["ApiId"] in self.text()),
            (f"/functions/{name}/permissions", "function-permissions", lambda: "s3.amazonaws.com" in self.text()),
            (f"/functions/{name}/async", "function-async", lambda: self.find("#async-empty")),
            (f"/functions/{name}/logs", None, lambda: "page {'hello': 'console'}" in self.text("#log-events")),
            (f"/functions/{name}/monitor", None, lambda: self.find('figure[data-chart="Invocations"] circle')),
            ("/async", None, lambda: "queued or running" in self.text()),
            ("/queues", "queues", lambda: f"orders-{s}" in self.text("#queues")),
            (f"/queues/orders-{s}", None, lambda: "ApproximateNumberOfMessages" in self.text()),
            ("/topics", "topics", lambda: f"sqs: arn:aws:sqs:{h.REGION}:{h.ACCOUNT}:orders-{s}" in self.text("#topics")),
            ("/rules", "rules", lambda: f"hourly-{s}" in self.text("#rules") and arn in self.text("#rules")),
            ("/buckets", None, lambda: f"photos-{s}" in self.text("#buckets")),
            (f"/buckets/photos-{s}", "bucket", lambda: "readme.txt" in self.text("#objects") and "2026/" in self.text("#objects")),
            (f"/buckets/photos-{s}?prefix=2026%2F", None, lambda: "cat.txt" in self.text("#objects")),
            ("/tables", "tables", lambda: f"tasks-{s}" in self.text("#tables")),
            (f"/tables/tasks-{s}", None, lambda: "6 items matched" in self.text()),
            ("/apis", "apis", lambda: api["ApiId"] in self.text("#http-apis")),
            ("/stacks", "stacks", lambda: f"shop-stack-{s}" in self.text("#stacks") and "CREATE_COMPLETE" in self.text("#stacks")),
            (f"/stacks/shop-stack-{s}", "stack",
             lambda: f"jobs-beta-{s}" in self.text("#stack-resources") and f"/jobs-beta-{s}" in self.text("#stack-outputs")
             and "beta" in self.text("#stack-parameters") and "CREATE_COMPLETE" in self.text("#stack-events")),
        ]
        for route, shot, ready in pages:
            with self.subTest(page=route):
                self.open(route)
                self.wait_for(ready, f"the content of {route}")
                self.assertNoConsoleErrors(route)
                if shot:
                    self.screenshot(shot)

        # The code download link (GetFunction's Code.Location) serves the function's zip.
        self.open(f"/functions/{name}/overview")
        link = self.wait_for(lambda: self.find("#download-code"), "the code download link")
        downloaded = requests.get(link.get_attribute("href"), timeout=30)
        self.assertEqual(downloaded.status_code, 200)
        self.assertEqual(downloaded.content[:4], b"PK\x03\x04")

        # A scan with a filter.
        self.open(f"/tables/tasks-{s}")
        self.wait_for(lambda: "6 items matched" in self.text(), "the first scan")
        self.find("#scan-filter").send_keys("#s = :s")
        self.find("#scan-names").send_keys('{"#s": "status"}')
        self.find("#scan-values").send_keys('{":s": {"S": "open"}}')
        self.find("#scan").click()
        self.wait_for(lambda: "3 items matched of 6 scanned" in self.text("#scan-results"), "the filtered scan")
        self.assertEqual(sorted(r.find_elements(By.CSS_SELECTOR, "td")[0].text for r in self.find_all("#items tbody tr")), ["t1", "t3", "t5"])
        self.screenshot("table-scan")
        self.assertNoConsoleErrors("the filtered scan")

    def test_bucket_upload_and_download(self):
        bucket = f"uploads-{self.suffix}"
        self.aws("s3").create_bucket(Bucket=bucket)
        content = f"uploaded from the console {uuid.uuid4()}\n".encode()
        local = Path(tempfile.mkdtemp(prefix="lamina-console-upload-")) / "notes (draft).txt"
        self.addCleanup(shutil.rmtree, local.parent, True)
        local.write_bytes(content)

        self.open(f"/buckets/{bucket}")
        self.wait_for(lambda: "This bucket is empty" in self.text(), "the empty state")
        self.find("#upload-file").send_keys(str(local))
        self.find("#upload").click()
        link = self.wait_for(lambda: self.find("#objects a.download"), "the uploaded object's row")
        self.assertIn("notes (draft).txt", self.text("#objects"))
        self.assertEqual(self.aws("s3").get_object(Bucket=bucket, Key="notes (draft).txt")["Body"].read(), content)
        # The download link is presigned in the page (SigV4 query form): any HTTP client can follow it.
        href = link.get_attribute("href")
        self.assertIn("X-Amz-Signature=", href)
        downloaded = requests.get(href, timeout=30)
        self.assertEqual((downloaded.status_code, downloaded.content), (200, content))
        self.assertEqual(requests.get(href.replace("X-Amz-Signature=", "X-Amz-Signature=0"), timeout=30).status_code, 403)
        self.assertNoConsoleErrors("the bucket page")

    def test_keyboard_navigation(self):
        self.open("/functions")
        self.browser.refresh()  # a fresh document: Tab starts from its top
        self.wait_for(lambda: self.find("#functions") or self.find(".empty"), "the functions page")
        def press(key):
            ActionChains(self.browser).send_keys(key).perform()
        press(Keys.TAB)
        active = self.browser.switch_to.active_element
        self.assertEqual(active.text, "Skip to content")
        press(Keys.ENTER)
        self.assertEqual(self.browser.switch_to.active_element.get_attribute("id"), "main")
        self.assertTrue(self.browser.current_url.endswith("#/functions"), self.browser.current_url)
        # Every service is a link in the navigation, reached with Tab and followed with Enter.
        self.browser.refresh()
        self.wait_for(lambda: self.find("#functions") or self.find(".empty"), "the functions page")
        reached = []
        for _ in range(12):
            press(Keys.TAB)
            reached.append(self.browser.switch_to.active_element.text)
            if reached[-1] == "Queues":
                break
        self.assertEqual(reached, ["Skip to content", "Lamina", "Functions", "Async queue", "Queues"])
        press(Keys.ENTER)
        self.wait_for(lambda: self.browser.current_url.endswith("#/queues") and self.text("#main h1") == "Queues", "the queues page")
        self.assertEqual(self.find('#nav a[data-section="queues"]').get_attribute("aria-current"), "page")
        # The create form takes its name first, with labels for every field.
        self.open("/functions/new")
        self.assertEqual(self.browser.switch_to.active_element.get_attribute("id"), "function-name")
        unlabeled = self.browser.execute_script(
            "return [...document.querySelectorAll('#main input, #main select, #main textarea')]"
            ".filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')).map(e => e.id)")
        self.assertEqual(unlabeled, [])
        self.assertNoConsoleErrors("keyboard navigation")


class ConsoleSignInTests(ConsoleTestCase):

    def test_wrong_secret_is_refused_then_the_key_works_and_sign_out_forgets_it(self):
        self.browser.get(f"{self.url}/console/")
        self.browser.execute_script("sessionStorage.clear()")
        self.browser.get(f"{self.url}/console/#/functions")
        self.screenshot("sign-in")
        self.console_errors()
        self.sign_in("not-the-secret")
        self.wait_for(lambda: "InvalidSignatureException" in self.text(), "the refusal")
        errors = self.console_errors()
        self.assertEqual(len(errors), 1, errors)  # the refused request itself, which Chromium logs
        self.assertIn("403", errors[0])
        self.sign_in(_key["SecretAccessKey"])
        self.wait_for(lambda: self.text("#main h1") == "Functions", "the functions page")
        stored = json.loads(self.browser.execute_script("return sessionStorage.getItem('lamina.console.credentials')"))
        self.assertEqual(stored["accessKeyId"], _key["AccessKeyId"])
        self.assertIsNone(self.browser.execute_script("return localStorage.getItem('lamina.console.credentials')"))
        self.find("#who button").click()
        self.wait_for(lambda: self.find("#sign-in"), "the sign-in form after signing out")
        self.assertIsNone(self.browser.execute_script("return sessionStorage.getItem('lamina.console.credentials')"))
        self.assertNoConsoleErrors("signing in and out")


class ConsoleSigningTests(ConsoleTestCase):

    def test_the_pure_javascript_sha256_and_hmac_match_python(self):
        """The fallback for pages that are not a secure context (no crypto.subtle), checked against hashlib."""
        import hashlib
        import hmac
        self.open("/functions")
        lengths = [0, 1, 55, 56, 63, 64, 65, 119, 120, 1000, 70000]
        result = self.browser.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "import('/console/js/sigv4.js').then(m => {"
            "  const hex = b => Array.from(b, x => x.toString(16).padStart(2, '0')).join('');"
            "  const data = n => Uint8Array.from({ length: n }, (_, i) => (i * 7 + 3) & 255);"
            f"  done({{ sha: {lengths}.map(n => hex(m.sha256Js(data(n)))),"
            "         mac: [[3, 10], [64, 100], [100, 5]].map(([k, n]) => hex(m.hmacJs(data(k), data(n)))) });"
            "}).catch(e => done(String(e)));")
        data = lambda n: bytes((i * 7 + 3) & 255 for i in range(n))  # noqa: E731
        self.assertEqual(result["sha"], [hashlib.sha256(data(n)).hexdigest() for n in lengths])
        self.assertEqual(result["mac"], [hmac.new(data(k), data(n), hashlib.sha256).hexdigest() for k, n in [(3, 10), (64, 100), (100, 5)]])


class ConsoleServerTests(ConsoleTestCase):
    """The server's side: static files only, and the metrics history API (plain HTTP and boto3, no browser)."""

    def test_console_files_are_static_and_open_while_the_apis_stay_signed(self):
        page = requests.get(f"{self.url}/console", timeout=10)
        self.assertEqual(page.status_code, 200)
        self.assertIn("text/html", page.headers["Content-Type"])
        csp = page.headers["Content-Security-Policy"]
        self.assertIn("script-src 'self'", csp)
        self.assertIn("connect-src 'self'", csp)
        self.assertIn('src="/console/js/app.js"', page.text)
        script = requests.get(f"{self.url}/console/js/app.js", timeout=10)
        self.assertEqual((script.status_code, script.headers["Content-Type"]), (200, "text/javascript; charset=utf-8"))
        self.assertEqual(requests.get(f"{self.url}/console/js/app.js", headers={"If-None-Match": script.headers["ETag"]}, timeout=10).status_code, 304)
        self.assertEqual(requests.head(f"{self.url}/console/app.css", timeout=10).status_code, 200)
        self.assertEqual(requests.get(f"{self.url}/console/nothing.js", timeout=10).status_code, 404)
        self.assertEqual(requests.get(f"{self.url}/console/..%2f..%2flamina.db", timeout=10).status_code, 404)
        self.assertIn(f"lamina: web console at {self.url}/console/", _server.output_since(0, 5000))
        # Nothing but GET and HEAD of files: any other request is the APIs' (signed) business.
        self.assertEqual(requests.post(f"{self.url}/console/js/app.js", data=b"x", timeout=10).status_code, 403)
        self.assertEqual(requests.get(f"{self.url}/lamina/v1/metrics/functions", timeout=10).status_code, 403)
        # A bucket named "console" is still S3's for signed requests.
        s3 = self.aws("s3")
        s3.create_bucket(Bucket="console")
        s3.put_object(Bucket="console", Key="app.css", Body=b"bucket object")
        self.assertEqual(s3.get_object(Bucket="console", Key="app.css")["Body"].read(), b"bucket object")
        self.assertIn("--accent", requests.get(f"{self.url}/console/app.css", timeout=10).text)

    def test_metrics_history_api(self):
        name = self.create_function(h.make_zip({"app.py": "def handler(e, c):\n    if e.get('fail'):\n        raise ValueError('no')\n    return 1\n"}))["FunctionName"]
        for payload in (b"{}", b"{}", b'{"fail": true}'):
            self.lam.invoke(FunctionName=name, Payload=payload)

        def mine():
            totals = self.operator("GET", "/lamina/v1/metrics/functions?minutes=5")
            self.assertEqual(totals.status_code, 200, totals.text)
            return [f for f in totals.json()["Functions"] if f["FunctionName"] == name]
        # Concurrency drops when the environment is given back, which may be just after the answer.
        self.wait_for(lambda: mine() and mine()[0]["ConcurrentExecutions"] == 0, "the invocations to end")
        self.assertEqual(mine(), [{"FunctionName": name, "Invocations": 3, "Errors": 1, "Throttles": 0, "ColdStarts": 1, "ConcurrentExecutions": 0}])
        series = self.operator("GET", f"/lamina/v1/metrics/functions/{name}?minutes=3").json()
        self.assertEqual((series["FunctionName"], series["Minutes"], len(series["Samples"])), (name, 3, 3))
        self.assertEqual(sum(s["Invocations"] for s in series["Samples"]), 3)
        now = series["Samples"][-1] if series["Samples"][-1]["Invocations"] else series["Samples"][-2]
        self.assertIsNotNone(now["DurationP50"])
        self.assertLessEqual(now["DurationP50"], now["DurationP99"])
        self.assertLessEqual(now["DurationP99"], now["DurationMax"])
        self.assertRegex(series["Samples"][0]["Timestamp"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:00Z$")

        for path in ("/lamina/v1/metrics/functions?minutes=0", "/lamina/v1/metrics/functions?minutes=181",
                     "/lamina/v1/metrics/functions/x?minutes=abc", "/lamina/v1/metrics/functions/bad%20name"):
            with self.subTest(path=path):
                bad = self.operator("GET", path)
                self.assertEqual(bad.status_code, 400, bad.text)
                self.assertEqual(bad.headers.get("x-amzn-ErrorType"), "InvalidParameterValueException")


if __name__ == "__main__":
    unittest.main()
