"""Tags (issue #4) through boto3, raw signed HTTP and the AWS CLI: TagResource, UntagResource, ListTags, and the Tags
given to CreateFunction."""
from __future__ import annotations

import os
import shutil
import unittest

import lamina_harness as h
from lamina_functions import py_probe_zip

MODULE = __name__
TAGS = "/2017-03-31/tags"


def setUpModule():
    h.start_module_server(MODULE)


def tearDownModule():
    h.stop_module_server(MODULE)


class TagTests(h.LaminaTestCase):

    def test_tags_from_create_are_listed_and_changed(self):
        name = self.fn_name()
        self.create_function(py_probe_zip(), name=name, Tags={"team": "core", "env": "dev"})
        arn = h.function_arn(name)
        self.assertEqual(self.lam.list_tags(Resource=arn)["Tags"], {"team": "core", "env": "dev"})

        resp = self.lam.tag_resource(Resource=arn, Tags={"env": "prod", "cost": "42"})
        self.assertIn(resp["ResponseMetadata"]["HTTPStatusCode"], (200, 204))
        self.assertEqual(self.lam.list_tags(Resource=arn)["Tags"], {"team": "core", "env": "prod", "cost": "42"})
        self.assertEqual(self.lam.get_function(FunctionName=name)["Tags"], {"team": "core", "env": "prod", "cost": "42"})

        self.lam.untag_resource(Resource=arn, TagKeys=["team", "not-there"])
        self.assertEqual(self.lam.list_tags(Resource=arn)["Tags"], {"env": "prod", "cost": "42"})
        self.lam.untag_resource(Resource=arn, TagKeys=["env", "cost"])
        self.assertEqual(self.lam.list_tags(Resource=arn)["Tags"], {})
        self.assertNotIn("Tags", self.lam.get_function(FunctionName=name))

    def test_tags_belong_to_the_function_not_its_versions(self):
        name = self.fn_name()
        self.create_function(py_probe_zip(), name=name)
        self.lam.publish_version(FunctionName=name)
        self.lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
        for qualifier in ("1", "live", "$LATEST"):
            with self.subTest(qualifier=qualifier):
                e = self.assertAwsError(lambda: self.lam.tag_resource(Resource=h.function_arn(name, qualifier), Tags={"a": "b"}),
                                        400, "InvalidParameterValueException")
                self.assertIn("Tags on function aliases and versions are not supported", e.response["Error"]["Message"])
        self.lam.tag_resource(Resource=h.function_arn(name), Tags={"a": "b"})
        self.assertEqual(self.lam.get_function(FunctionName=name, Qualifier="1")["Tags"], {"a": "b"})

    def test_unknown_function_and_bad_resources(self):
        missing = h.function_arn(self.fn_name("missing"))
        for call in (lambda: self.lam.list_tags(Resource=missing),
                     lambda: self.lam.tag_resource(Resource=missing, Tags={"a": "b"}),
                     lambda: self.lam.untag_resource(Resource=missing, TagKeys=["a"])):
            e = self.assertAwsError(call, 404, "ResourceNotFoundException")
            self.assertIn(missing, e.response["Error"]["Message"])
        for resource in ("not-an-arn", f"arn:aws:lambda:{h.REGION}:{h.ACCOUNT}:layer:x"):
            with self.subTest(resource=resource):
                r = self.server.raw("GET", f"{TAGS}/{h.quote_path_segment(resource)}")
                self.assertRawError(r, 400, ("ValidationException", "InvalidParameterValueException"))

    def test_limits(self):
        name = self.fn_name()
        self.create_function(py_probe_zip(), name=name)
        arn = h.function_arn(name)
        path = f"{TAGS}/{h.quote_path_segment(arn)}"
        self.assertRawError(self.server.raw("POST", path, {"Tags": {"k" * 129: "v"}}), 400)
        self.assertRawError(self.server.raw("POST", path, {"Tags": {"k": "v" * 257}}), 400)
        self.assertRawError(self.server.raw("POST", path, {"Tags": {}}), 400)
        self.assertRawError(self.server.raw("POST", path, {"NotTags": 1}), 400)
        self.assertRawError(self.server.raw("DELETE", path), 400)
        self.lam.tag_resource(Resource=arn, Tags={f"k{i}": "v" for i in range(50)})
        e = self.assertAwsError(lambda: self.lam.tag_resource(Resource=arn, Tags={"one-more": "v"}),
                                400, "InvalidParameterValueException")
        self.assertIn("tag limit", e.response["Error"]["Message"])
        self.lam.tag_resource(Resource=arn, Tags={"k1": "replaced"})  # replacing keeps the count
        tags = self.lam.list_tags(Resource=arn)["Tags"]
        self.assertEqual((len(tags), tags["k1"]), (50, "replaced"))

    @unittest.skipIf(shutil.which(os.environ.get("LAMINA_AWS_CLI", "aws")) is None, "AWS CLI not installed")
    def test_cli_tag_list_untag(self):
        name = self.fn_name()
        self.create_function(py_probe_zip(), name=name)
        arn = h.function_arn(name)
        for cli in [os.environ.get("LAMINA_AWS_CLI", "aws")] + (["/usr/bin/aws"] if os.path.exists("/usr/bin/aws") else []):
            with self.subTest(cli=cli):
                r = self.server.aws_cli("lambda", "tag-resource", "--resource", arn, "--tags", "team=cli,env=test", cli=cli)
                self.assertEqual(r.rc, 0, repr(r))
                r = self.server.aws_cli("lambda", "list-tags", "--resource", arn, cli=cli)
                self.assertEqual(r.json["Tags"], {"team": "cli", "env": "test"})
                r = self.server.aws_cli("lambda", "untag-resource", "--resource", arn, "--tag-keys", "team", "env", cli=cli)
                self.assertEqual(r.rc, 0, repr(r))
                self.assertEqual(self.server.aws_cli("lambda", "list-tags", "--resource", arn, cli=cli).json["Tags"], {})


if __name__ == "__main__":
    unittest.main()
