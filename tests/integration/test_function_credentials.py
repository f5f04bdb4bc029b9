"""Execution-role credentials (issue #9): each environment gets AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY /
AWS_SESSION_TOKEN and AWS_ENDPOINT_URL, so a function calls Lamina through the AWS SDK for JavaScript v3 as it would
call Lambda. Calls from a function are always checked, even on a server without keys: unsigned, wrongly signed or
token-less calls are refused, the operator API is out of reach, and each environment has credentials of its own.
(With keys configured, test_auth.py shows the same credentials working and being useless outside their environment.)"""
from __future__ import annotations

import lamina_harness as h
from lamina_functions import py_probe_zip, sdk_caller_zip

MODULE = __name__

def setUpModule():
    h.start_module_server(MODULE)


def tearDownModule():
    h.stop_module_server(MODULE)


class FunctionCredentialsTests(h.LaminaTestCase):

    def _caller(self) -> str:
        name = self.fn_name("caller")
        self.create_function(sdk_caller_zip(), name=name, runtime="nodejs20.x", handler="index.handler", Timeout=30)
        return name

    def test_a_function_invokes_another_through_the_sdk(self):
        target = self.fn_name("target")
        self.create_function(py_probe_zip(), name=target)
        caller = self._caller()
        _, out = self.invoke_ok(caller, {"invoke": target})
        self.assertNotIn("sdkError", out, out)
        self.assertEqual(out["endpoint"], "http://127.0.0.1:9001")
        self.assertRegex(out["keyId"], r"^ASIA[A-Z2-7]{16}$")
        self.assertTrue(out["hasSecret"] and out["hasToken"], out)
        self.assertEqual(out["invoked"]["event"], {"via": "sdk"}, out)
        self.assertIn(target, out["listed"])
        self.assertIn(caller, out["listed"])

    def test_unsigned_wrongly_signed_and_operator_calls_are_refused(self):
        caller = self._caller()
        _, out = self.invoke_ok(caller, {"probes": True})
        self.assertNotIn("sdkError", out, out)  # the environment's own credentials work
        self.assertEqual((out["unsigned"]["status"], out["unsigned"]["type"]), (403, "MissingAuthenticationTokenException"), out)
        self.assertEqual(out["wrongSecret"], "InvalidSignatureException", out)
        self.assertEqual(out["noToken"], "UnrecognizedClientException", out)
        self.assertEqual(out["unknownKey"], "UnrecognizedClientException", out)
        self.assertEqual((out["operator"]["status"], out["operator"]["type"]), (403, "AccessDeniedException"), out)
        self.assertEqual((out["metrics"]["status"], out["metrics"]["type"]), (403, "AccessDeniedException"), out)

    def test_each_environment_has_credentials_of_its_own_that_never_reach_the_logs(self):
        first = self._caller()
        second = self._caller()
        _, a = self.invoke_ok(first, {"reveal": True})
        _, again = self.invoke_ok(first, {"reveal": True})
        _, b = self.invoke_ok(second, {"reveal": True})
        self.assertEqual(a["credentials"], again["credentials"])  # the same (warm) environment
        self.assertNotEqual(a["credentials"]["id"], b["credentials"]["id"])
        self.assertNotEqual(a["credentials"]["secret"], b["credentials"]["secret"])
        output = self.server.output_since(0, 100000)
        for credentials in (a["credentials"], b["credentials"]):
            self.assertNotIn(credentials["secret"], output)
            self.assertNotIn(credentials["token"], output)
