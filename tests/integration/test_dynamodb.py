"""DynamoDB-compatible tables (issue #21), driven by boto3 (client, resource/Table, boto3.dynamodb.conditions), AWS CLI
v1 and v2 (`aws dynamodb …`, `wait table-exists`), the AWS SDK for JavaScript v3 (client-dynamodb and lib-dynamodb's
DocumentClient) and raw signed requests: tables and their lifecycle, the type system (exact 38-digit numbers, sets,
nesting), the expression languages with DynamoDB's error messages, Query/Scan (key order, indexes, filters, paging
at 1 MB, segments), batches, transactions, TTL, and hostile inputs (oversized items, malformed JSON, deep nesting),
and acknowledged writes surviving kill -9."""
from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import threading
import time
from decimal import Decimal
from pathlib import Path

import boto3
import botocore.auth
import botocore.awsrequest
import botocore.credentials
import botocore.exceptions
import requests
from boto3.dynamodb.conditions import Attr, Key
from botocore.config import Config

import lamina_harness as h

MODULE = __name__


def setUpModule():
    h.start_module_server(MODULE)


def tearDownModule():
    h.stop_module_server(MODULE)


class DynamoDbTestCase(h.LaminaTestCase):

    @property
    def ddb(self):
        if not hasattr(self, "_ddb"):
            self._ddb = h.boto3_client(self.server.url, "dynamodb")
        return self._ddb

    @property
    def resource(self):
        return boto3.resource("dynamodb", endpoint_url=self.server.url, region_name=h.REGION, aws_access_key_id=h.ACCESS_KEY,
                              aws_secret_access_key=h.SECRET_KEY, config=Config(retries={"max_attempts": 0}))

    def name(self, suffix: str = "t") -> str:
        return self.fn_name(suffix)[:60]

    def create(self, hash_type="S", range_type=None, name=None, **kwargs) -> str:
        name = name or self.name()
        keys = [{"AttributeName": "pk", "KeyType": "HASH"}]
        attrs = [{"AttributeName": "pk", "AttributeType": hash_type}]
        if range_type:
            keys.append({"AttributeName": "sk", "KeyType": "RANGE"})
            attrs.append({"AttributeName": "sk", "AttributeType": range_type})
        attrs += kwargs.pop("ExtraAttributes", [])
        self.ddb.create_table(TableName=name, KeySchema=keys, AttributeDefinitions=attrs, BillingMode="PAY_PER_REQUEST", **kwargs)
        self.addCleanup(self._drop, name)
        return name

    def _drop(self, name):
        try:
            self.ddb.delete_table(TableName=name)
        except botocore.exceptions.ClientError:
            pass

    def raw(self, target: str, body, server=None) -> requests.Response:
        """A signed awsJson1_0 request, bypassing botocore's own validation."""
        url = (server or self.server).url + "/"
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers = {"X-Amz-Target": target, "Content-Type": "application/x-amz-json-1.0"}
        request = botocore.awsrequest.AWSRequest(method="POST", url=url, data=data, headers=headers)
        botocore.auth.SigV4Auth(botocore.credentials.Credentials(h.ACCESS_KEY, h.SECRET_KEY), "dynamodb", h.REGION).add_auth(request)
        return requests.post(url, data=data, headers=dict(request.headers.items()), timeout=60)

    def assertDdbError(self, fn, code: str, message: str | None = None, contains: str | None = None):
        with self.assertRaises(botocore.exceptions.ClientError) as caught:
            fn()
        error = caught.exception.response["Error"]
        self.assertEqual(error["Code"], code, error)
        self.assertEqual(caught.exception.response["ResponseMetadata"]["HTTPStatusCode"], 500 if code == "InternalServerError" else 400)
        if message is not None:
            self.assertEqual(error["Message"], message)
        if contains is not None:
            self.assertIn(contains, error["Message"])
        return caught.exception.response


class TableTests(DynamoDbTestCase):

    def test_lifecycle_with_boto3(self):
        name = self.create("S", "N", Tags=[{"Key": "team", "Value": "a"}],
                           ExtraAttributes=[{"AttributeName": "g", "AttributeType": "S"}],
                           GlobalSecondaryIndexes=[{"IndexName": "byG", "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
                                                    "Projection": {"ProjectionType": "KEYS_ONLY"}}])
        self.ddb.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 5})
        table = self.ddb.describe_table(TableName=name)["Table"]
        self.assertEqual(table["TableStatus"], "ACTIVE")
        self.assertEqual(table["KeySchema"], [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}])
        self.assertEqual(table["BillingModeSummary"]["BillingMode"], "PAY_PER_REQUEST")
        self.assertEqual(table["TableArn"], f"arn:aws:dynamodb:us-east-1:{h.ACCOUNT}:table/{name}")
        self.assertEqual(table["GlobalSecondaryIndexes"][0]["IndexStatus"], "ACTIVE")
        self.assertIn(name, self.ddb.list_tables()["TableNames"])
        self.assertEqual(self.ddb.list_tags_of_resource(ResourceArn=table["TableArn"])["Tags"], [{"Key": "team", "Value": "a"}])
        self.ddb.tag_resource(ResourceArn=table["TableArn"], Tags=[{"Key": "env", "Value": "test"}])
        self.ddb.untag_resource(ResourceArn=table["TableArn"], TagKeys=["team"])
        self.assertEqual(self.ddb.list_tags_of_resource(ResourceArn=table["TableArn"])["Tags"], [{"Key": "env", "Value": "test"}])
        updated = self.ddb.update_table(TableName=name, BillingMode="PROVISIONED", ProvisionedThroughput={"ReadCapacityUnits": 5, "WriteCapacityUnits": 5},
                                        GlobalSecondaryIndexUpdates=[{"Delete": {"IndexName": "byG"}}])["TableDescription"]
        self.assertEqual(updated["TableStatus"], "UPDATING")
        table = self.ddb.describe_table(TableName=name)["Table"]
        self.assertEqual(table["ProvisionedThroughput"]["ReadCapacityUnits"], 5)
        self.assertNotIn("GlobalSecondaryIndexes", table)
        self.assertDdbError(lambda: self.ddb.create_table(TableName=name, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                                                          AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST"),
                            "ResourceInUseException", f"Table already exists: {name}")
        deleted = self.ddb.delete_table(TableName=name)["TableDescription"]
        self.assertEqual(deleted["TableStatus"], "DELETING")
        self.ddb.get_waiter("table_not_exists").wait(TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 5})
        self.assertDdbError(lambda: self.ddb.describe_table(TableName=name), "ResourceNotFoundException")

    def test_create_table_validation(self):
        def create(**kwargs):
            args = dict(TableName=self.name(), KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST")
            args.update(kwargs)
            return lambda: self.ddb.create_table(**args)
        self.assertDdbError(create(AttributeDefinitions=[{"AttributeName": "x", "AttributeType": "S"}]), "ValidationException",
                            contains="Some index key attributes are not defined in AttributeDefinitions")
        self.assertDdbError(create(AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "y", "AttributeType": "S"}]),
                            "ValidationException", "One or more parameter values were invalid: Number of attributes in KeySchema does not exactly match number of attributes defined in AttributeDefinitions")
        self.assertDdbError(create(BillingMode="PROVISIONED"), "ValidationException",
                            contains="ReadCapacityUnits and WriteCapacityUnits must both be specified")
        self.assertDdbError(create(ProvisionedThroughput={"ReadCapacityUnits": 1, "WriteCapacityUnits": 1}), "ValidationException",
                            contains="Neither ReadCapacityUnits nor WriteCapacityUnits can be specified when BillingMode is PAY_PER_REQUEST")
        self.assertDdbError(create(KeySchema=[{"AttributeName": "pk", "KeyType": "RANGE"}]), "ValidationException",
                            "Invalid KeySchema: The first KeySchemaElement is not a HASH key type")
        response = self.raw("DynamoDB_20120810.CreateTable", {"TableName": "a", "KeySchema": [], "AttributeDefinitions": []})
        self.assertEqual(response.status_code, 400)
        self.assertEqual(response.json(), {"__type": "com.amazon.coral.validate#ValidationException",
                                           "message": "1 validation error detected: Value 'a' at 'tableName' failed to satisfy constraint: Member must have length greater than or equal to 3"})

    def test_cli_v1_and_v2(self):
        clis = ["aws"] + (["/usr/bin/aws"] if Path("/usr/bin/aws").exists() else [])
        for cli in clis:
            name = self.name("cli")
            self.addCleanup(self._drop, name)
            created = self.server.aws_cli("dynamodb", "create-table", "--table-name", name,
                                          "--attribute-definitions", "AttributeName=pk,AttributeType=S", "AttributeName=sk,AttributeType=N",
                                          "--key-schema", "AttributeName=pk,KeyType=HASH", "AttributeName=sk,KeyType=RANGE",
                                          "--billing-mode", "PAY_PER_REQUEST", "--stream-specification", "StreamEnabled=true,StreamViewType=NEW_IMAGE", cli=cli)
            self.assertEqual(created.rc, 0, created)
            self.assertTrue(created.json["TableDescription"]["LatestStreamArn"].startswith(f"arn:aws:dynamodb:us-east-1:{h.ACCOUNT}:table/{name}/stream/"))
            waited = self.server.aws_cli("dynamodb", "wait", "table-exists", "--table-name", name, cli=cli)
            self.assertEqual(waited.rc, 0, waited)
            self.assertLess(waited.elapsed, 15, "the table is ACTIVE at once: the waiter's first look succeeds")
            for i in range(3):
                put = self.server.aws_cli("dynamodb", "put-item", "--table-name", name, "--item", json.dumps({"pk": {"S": "a"}, "sk": {"N": str(i)}, "v": {"N": "0.1"}}), cli=cli)
                self.assertEqual(put.rc, 0, put)
            query = self.server.aws_cli("dynamodb", "query", "--table-name", name, "--key-condition-expression", "pk = :p AND sk >= :s",
                                        "--expression-attribute-values", '{":p":{"S":"a"},":s":{"N":"1"}}', "--no-scan-index-forward", cli=cli)
            self.assertEqual(query.rc, 0, query)
            self.assertEqual([i["sk"]["N"] for i in query.json["Items"]], ["2", "1"])
            scan = self.server.aws_cli("dynamodb", "scan", "--table-name", name, "--page-size", "1", cli=cli)
            self.assertEqual(scan.rc, 0, scan)
            self.assertEqual(scan.json["Count"], 3, "the CLI follows LastEvaluatedKey across pages")
            failed = self.server.aws_cli("dynamodb", "put-item", "--table-name", name, "--item", '{"pk":{"S":"a"},"sk":{"N":"1"}}',
                                         "--condition-expression", "attribute_not_exists(pk)", cli=cli)
            self.assertNotEqual(failed.rc, 0)
            self.assertIn("ConditionalCheckFailedException", failed.stderr)
            ttl = self.server.aws_cli("dynamodb", "update-time-to-live", "--table-name", name, "--time-to-live-specification", "Enabled=true,AttributeName=exp", cli=cli)
            self.assertEqual(ttl.rc, 0, ttl)
            described = self.server.aws_cli("dynamodb", "describe-time-to-live", "--table-name", name, cli=cli)
            self.assertEqual(described.json["TimeToLiveDescription"], {"TimeToLiveStatus": "ENABLED", "AttributeName": "exp"})
            deleted = self.server.aws_cli("dynamodb", "delete-table", "--table-name", name, cli=cli)
            self.assertEqual(deleted.rc, 0, deleted)

    def test_secondary_indexes(self):
        name = self.create("S", "S", ExtraAttributes=[{"AttributeName": "g", "AttributeType": "S"}, {"AttributeName": "score", "AttributeType": "N"}],
                           GlobalSecondaryIndexes=[{"IndexName": "byG", "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}, {"AttributeName": "score", "KeyType": "RANGE"}],
                                                    "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["extra"]}}],
                           LocalSecondaryIndexes=[{"IndexName": "byScore", "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "score", "KeyType": "RANGE"}],
                                                   "Projection": {"ProjectionType": "ALL"}}])
        table = self.resource.Table(name)
        with table.batch_writer() as batch:
            for i in range(10):
                batch.put_item(Item={"pk": f"p{i % 2}", "sk": f"s{i}", "g": "even" if i % 2 == 0 else "odd", "score": Decimal(100 - i), "extra": i, "hidden": "x"})
        batch_item = {"pk": "p9", "sk": "no-index"}  # no g/score: in neither index
        table.put_item(Item=batch_item)
        odd = table.query(IndexName="byG", KeyConditionExpression=Key("g").eq("odd") & Key("score").gt(92))["Items"]
        self.assertEqual([int(i["score"]) for i in odd], [93, 95, 97, 99])
        self.assertEqual(set(odd[0]), {"pk", "sk", "g", "score", "extra"}, "INCLUDE projection: keys and the named attributes")
        self.assertDdbError(lambda: table.query(IndexName="byG", KeyConditionExpression=Key("g").eq("odd"), Select="ALL_ATTRIBUTES"),
                            "ValidationException", contains="projection type is not ALL")
        self.assertDdbError(lambda: table.query(IndexName="byG", KeyConditionExpression=Key("g").eq("odd"), ConsistentRead=True),
                            "ValidationException", "Consistent reads are not supported on global secondary indexes")
        local = table.query(IndexName="byScore", KeyConditionExpression=Key("pk").eq("p0"), ScanIndexForward=False, Limit=2)
        self.assertEqual([int(i["score"]) for i in local["Items"]], [100, 98])
        self.assertEqual(set(local["LastEvaluatedKey"]), {"pk", "sk", "score"})
        rest = table.query(IndexName="byScore", KeyConditionExpression=Key("pk").eq("p0"), ScanIndexForward=False, ExclusiveStartKey=local["LastEvaluatedKey"])
        self.assertEqual([int(i["score"]) for i in rest["Items"]], [96, 94, 92])
        self.assertEqual(table.scan(IndexName="byG", Select="COUNT")["Count"], 10)
        # DescribeTable's figures: the table's 11 items; each index's 10 (the one without g and score is in neither),
        # their bytes the table's average item's times 10.
        described = self.ddb.describe_table(TableName=name)["Table"]
        self.assertEqual(described["ItemCount"], 11)
        self.assertGreater(described["TableSizeBytes"], 0)
        for index in described["GlobalSecondaryIndexes"] + described["LocalSecondaryIndexes"]:
            self.assertEqual(index["ItemCount"], 10, index["IndexName"])
            self.assertEqual(index["IndexSizeBytes"], described["TableSizeBytes"] * 10 // 11, index["IndexName"])
        # Moving an item between index partitions, and out of the index.
        table.update_item(Key={"pk": "p1", "sk": "s1"}, UpdateExpression="SET g = :e", ExpressionAttributeValues={":e": "even"})
        table.update_item(Key={"pk": "p1", "sk": "s3"}, UpdateExpression="REMOVE g")
        self.assertEqual(table.query(IndexName="byG", KeyConditionExpression=Key("g").eq("odd"), Select="COUNT")["Count"], 3)
        self.assertEqual(table.query(IndexName="byG", KeyConditionExpression=Key("g").eq("even"), Select="COUNT")["Count"], 6)
        self.assertDdbError(lambda: table.put_item(Item={"pk": "x", "sk": "y", "g": 5}), "ValidationException",
                            "One or more parameter values were invalid: Type mismatch for Index Key g Expected: S Actual: N IndexName: byG")
        # A GSI added later is filled from the items already there.
        self.ddb.update_table(TableName=name, AttributeDefinitions=[{"AttributeName": "extra", "AttributeType": "N"}],
                              GlobalSecondaryIndexUpdates=[{"Create": {"IndexName": "byExtra", "KeySchema": [{"AttributeName": "extra", "KeyType": "HASH"}],
                                                                       "Projection": {"ProjectionType": "ALL"}}}])
        self.assertEqual(table.query(IndexName="byExtra", KeyConditionExpression=Key("extra").eq(4))["Items"][0]["sk"], "s4")


class ItemTests(DynamoDbTestCase):

    def test_types_round_trip_exactly(self):
        name = self.create("N")
        item = {
            "pk": {"N": "1"},
            "s": {"S": "héllo \U0001F600"}, "n": {"N": "12345678901234567890123456789012345678"},
            "tiny": {"N": "0.000000000000000000000000000000000000000000000000000000000000001"},
            "big": {"N": "9.9999999999999999999999999999999999999E+125"}, "neg": {"N": "-0.10"},
            "b": {"B": b"\x00\x01\x02\x03\x04"}, "t": {"BOOL": True}, "nul": {"NULL": True},
            "ss": {"SS": ["a", "b"]}, "ns": {"NS": ["1", "2.5"]}, "bs": {"BS": [b"\x01", b"\x02"]},
            "m": {"M": {"inner": {"L": [{"S": "x"}, {"M": {"deep": {"N": "3"}}}]}, "empty": {"M": {}}}},
            "l": {"L": []}, "empty": {"S": ""},
        }
        self.ddb.put_item(TableName=name, Item=item)
        got = self.ddb.get_item(TableName=name, Key={"pk": {"N": "1.0"}}, ConsistentRead=True)["Item"]
        expected = dict(item)
        expected["big"] = {"N": "99999999999999999999999999999999999999" + "0" * 88}
        expected["neg"] = {"N": "-0.1"}
        self.assertEqual({k: v for k, v in got.items() if k not in ("ss", "ns", "bs")}, {k: v for k, v in expected.items() if k not in ("ss", "ns", "bs")})
        self.assertEqual(sorted(got["ss"]["SS"]), ["a", "b"])
        self.assertEqual(sorted(got["ns"]["NS"]), ["1", "2.5"])
        self.assertEqual(sorted(got["bs"]["BS"]), [b"\x01", b"\x02"])
        # Arithmetic is exact: 0.1 + 0.2 = 0.3, and 38 digits stay 38 digits.
        updated = self.ddb.update_item(TableName=name, Key={"pk": {"N": "1"}}, UpdateExpression="SET neg = neg + :a, n = n - :one",
                                       ExpressionAttributeValues={":a": {"N": "0.4"}, ":one": {"N": "1"}}, ReturnValues="UPDATED_NEW")["Attributes"]
        self.assertEqual(updated, {"neg": {"N": "0.3"}, "n": {"N": "12345678901234567890123456789012345677"}})
        self.assertDdbError(lambda: self.ddb.update_item(TableName=name, Key={"pk": {"N": "1"}}, UpdateExpression="SET n = n + :tiny",
                                                         ExpressionAttributeValues={":tiny": {"N": "0.1"}}),
                            "ValidationException", "Attempting to store more than 38 significant digits in a Number")
        for bad, message in [("1E+126", "Number overflow. Attempting to store a number with magnitude larger than supported range"),
                             ("123456789012345678901234567890123456789", "Attempting to store more than 38 significant digits in a Number"),
                             ("12a", "A value provided cannot be converted into a number")]:
            self.assertDdbError(lambda: self.ddb.put_item(TableName=name, Item={"pk": {"N": "2"}, "x": {"N": bad}}), "ValidationException", message)
        self.assertDdbError(lambda: self.ddb.put_item(TableName=name, Item={"pk": {"N": "2"}, "x": {"SS": ["a", "a"]}}), "ValidationException",
                            "One or more parameter values were invalid: Input collection [a, a] contains duplicates.")
        self.assertDdbError(lambda: self.ddb.put_item(TableName=name, Item={"pk": {"N": "2"}, "x": {"SS": []}}), "ValidationException",
                            "One or more parameter values were invalid: An string set  may not be empty")

    def test_resource_table_and_conditions(self):
        table = self.resource.Table(self.create("S", "S"))
        table.put_item(Item={"pk": "u1", "sk": "profile", "name": "Ann", "age": 30, "tags": {"a", "b"}, "address": {"city": "Oslo", "zip": "0150"}})
        self.assertEqual(table.get_item(Key={"pk": "u1", "sk": "profile"}, ProjectionExpression="address.city, age")["Item"],
                         {"address": {"city": "Oslo"}, "age": 30})
        out = table.update_item(Key={"pk": "u1", "sk": "profile"},
                                UpdateExpression="SET age = age + :one, visits = if_not_exists(visits, :zero) + :one, hist = list_append(if_not_exists(hist, :empty), :h) ADD tags :c REMOVE address.zip",
                                ConditionExpression=Attr("age").between(18, 65) & Attr("name").begins_with("A") & Attr("tags").contains("a"),
                                ExpressionAttributeValues={":one": 1, ":zero": 0, ":empty": [], ":h": ["v1"], ":c": {"c"}},
                                ReturnValues="ALL_NEW")["Attributes"]
        self.assertEqual((out["age"], out["visits"], out["hist"], out["tags"], out["address"]), (31, 1, ["v1"], {"a", "b", "c"}, {"city": "Oslo"}))
        out = table.update_item(Key={"pk": "u1", "sk": "profile"}, UpdateExpression="DELETE tags :a", ExpressionAttributeValues={":a": {"a"}},
                                ReturnValues="UPDATED_NEW")["Attributes"]
        self.assertEqual(out, {"tags": {"b", "c"}})
        self.assertDdbError(lambda: table.update_item(Key={"pk": "u1", "sk": "profile"}, UpdateExpression="ADD tags :a DELETE tags :a",
                                                      ExpressionAttributeValues={":a": {"a"}}),
                            "ValidationException", "Invalid UpdateExpression: Two document paths overlap with each other; must remove or rewrite one of these paths; path one: [tags], path two: [tags]")
        old = table.update_item(Key={"pk": "u1", "sk": "profile"}, UpdateExpression="SET #n = :n", ExpressionAttributeNames={"#n": "name"},
                                ExpressionAttributeValues={":n": "Bo"}, ReturnValues="UPDATED_OLD")["Attributes"]
        self.assertEqual(old, {"name": "Ann"})
        failed = self.assertDdbError(lambda: table.put_item(Item={"pk": "u1", "sk": "profile"}, ConditionExpression=Attr("age").lt(10),
                                                            ReturnValuesOnConditionCheckFailure="ALL_OLD"),
                                     "ConditionalCheckFailedException", "The conditional request failed")
        self.assertEqual(failed["Item"]["name"], {"S": "Bo"})
        table.put_item(Item={"pk": "u1", "sk": "order#1", "total": 5})
        table.put_item(Item={"pk": "u1", "sk": "order#2", "total": 50})
        orders = table.query(KeyConditionExpression=Key("pk").eq("u1") & Key("sk").begins_with("order#"), FilterExpression=Attr("total").gt(10))
        self.assertEqual((orders["Count"], orders["ScannedCount"], orders["Items"][0]["sk"]), (1, 2, "order#2"))
        self.assertEqual(table.scan(FilterExpression=Attr("tags").exists() | Attr("total").eq(5))["Count"], 2)
        self.assertEqual(table.scan(FilterExpression=Attr("total").is_in([5, 50]) & Attr("age").not_exists())["Count"], 2)
        self.assertEqual(table.scan(FilterExpression=Attr("tags").size().eq(2) & Attr("tags").attribute_type("SS"))["Count"], 1)
        deleted = table.delete_item(Key={"pk": "u1", "sk": "order#1"}, ReturnValues="ALL_OLD")["Attributes"]
        self.assertEqual(deleted["total"], 5)
        self.assertNotIn("Item", table.get_item(Key={"pk": "u1", "sk": "order#1"}))

    def test_expression_errors_as_dynamodb_words_them(self):
        name = self.create()
        key = {"pk": {"S": "k"}}
        cases = [
            (dict(UpdateExpression="SET a = :v", ExpressionAttributeValues={":v": {"S": "x"}, ":w": {"S": "y"}}),
             "Value provided in ExpressionAttributeValues unused in expressions: keys: {:w}"),
            (dict(UpdateExpression="SET #a = :v", ExpressionAttributeNames={"#a": "a", "#b": "b"}, ExpressionAttributeValues={":v": {"S": "x"}}),
             "Value provided in ExpressionAttributeNames unused in expressions: keys: {#b}"),
            (dict(UpdateExpression="SET size = :v", ExpressionAttributeValues={":v": {"S": "x"}}),
             "Invalid UpdateExpression: Attribute name is a reserved keyword; reserved keyword: size"),
            (dict(UpdateExpression="SET a = :v,", ExpressionAttributeValues={":v": {"S": "x"}}),
             'Invalid UpdateExpression: Syntax error; token: "<EOF>", near: ","'),
            (dict(UpdateExpression="SET pk = :v", ExpressionAttributeValues={":v": {"S": "x"}}),
             "One or more parameter values were invalid: Cannot update attribute pk. This attribute is part of the key"),
            (dict(UpdateExpression="SET a = :v", ConditionExpression="a = :undefined", ExpressionAttributeValues={":v": {"S": "x"}}),
             "Invalid ConditionExpression: An expression attribute value used in expression is not defined; attribute value: :undefined"),
            (dict(UpdateExpression="SET a.b = :v", ExpressionAttributeValues={":v": {"S": "x"}}),
             "The document path provided in the update expression is invalid for update"),
        ]
        for kwargs, message in cases:
            with self.subTest(message=message):
                self.assertDdbError(lambda: self.ddb.update_item(TableName=name, Key=key, **kwargs), "ValidationException", message)
        self.assertDdbError(lambda: self.ddb.get_item(TableName=name, Key={"pk": {"N": "1"}}), "ValidationException",
                            "The provided key element does not match the schema")
        self.assertDdbError(lambda: self.ddb.get_item(TableName=name, Key={"pk": {"S": ""}}), "ValidationException",
                            "One or more parameter values are not valid. The AttributeValue for a key attribute cannot contain an empty string value. Key: pk")
        self.assertDdbError(lambda: self.ddb.put_item(TableName=name, Item={"x": {"S": "y"}}), "ValidationException",
                            "One or more parameter values were invalid: Missing the key pk in the item")
        self.assertDdbError(lambda: self.ddb.query(TableName=name, KeyConditionExpression="pk = :v AND nk = :v", ExpressionAttributeValues={":v": {"S": "x"}}),
                            "ValidationException", contains="Query condition missed key schema element")
        self.assertDdbError(lambda: self.ddb.query(TableName=name, KeyConditionExpression="pk = :v", FilterExpression="pk = :v", ExpressionAttributeValues={":v": {"S": "x"}}),
                            "ValidationException", "Filter Expression can only contain non-primary key attributes: Primary key attribute: pk")
        self.assertDdbError(lambda: self.ddb.get_item(TableName="nope-table", Key=key), "ResourceNotFoundException")

    def test_sort_key_order_matches_dynamodb(self):
        numbers = self.resource.Table(self.create("S", "N"))
        values = ["-1E+10", "-5.5", "-0.001", "0", "0.0001", "1", "1.5", "2", "10", "100", "1E+30"]
        for v in reversed(values):
            numbers.put_item(Item={"pk": "n", "sk": Decimal(v)})
        self.assertEqual([i["sk"] for i in numbers.query(KeyConditionExpression=Key("pk").eq("n"))["Items"]], [Decimal(v) for v in values])
        self.assertEqual(len(numbers.query(KeyConditionExpression=Key("pk").eq("n") & Key("sk").between(Decimal("-1"), Decimal("1.5")))["Items"]), 5)
        strings = self.resource.Table(self.create("S", "S"))
        words = ["A", "B", "a", "aa", "ab", "b", "é", "\uFFFD", "\U0001F600"]  # UTF-8 byte order (not UTF-16's)
        for w in reversed(words):
            strings.put_item(Item={"pk": "s", "sk": w})
        self.assertEqual([i["sk"] for i in strings.query(KeyConditionExpression=Key("pk").eq("s"))["Items"]], words)
        self.assertEqual([i["sk"] for i in strings.query(KeyConditionExpression=Key("pk").eq("s") & Key("sk").begins_with("a"))["Items"]], ["a", "aa", "ab"])
        binaries = self.create("S", "B")
        for b in (b"\xff", b"\x00", b"\x00\x01", b"\x7f", b"\x80"):
            self.ddb.put_item(TableName=binaries, Item={"pk": {"S": "b"}, "sk": {"B": b}})
        got = self.ddb.query(TableName=binaries, KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "b"}})["Items"]
        self.assertEqual([i["sk"]["B"] for i in got], [b"\x00", b"\x00\x01", b"\x7f", b"\x80", b"\xff"])

    def test_paging_stops_at_one_megabyte(self):
        table = self.resource.Table(self.create("S", "N"))
        blob = "x" * 100_000
        with table.batch_writer() as batch:
            for i in range(25):
                batch.put_item(Item={"pk": "big", "sk": i, "blob": blob})
        first = table.query(KeyConditionExpression=Key("pk").eq("big"))
        self.assertLess(len(first["Items"]), 25)
        self.assertGreaterEqual(len(first["Items"]), 10)
        self.assertIn("LastEvaluatedKey", first)
        total, start = len(first["Items"]), first["LastEvaluatedKey"]
        while start:
            page = table.query(KeyConditionExpression=Key("pk").eq("big"), ExclusiveStartKey=start)
            total += len(page["Items"])
            start = page.get("LastEvaluatedKey")
        self.assertEqual(total, 25)
        counted = self.ddb.get_paginator("scan").paginate(TableName=table.name, Select="COUNT")
        self.assertEqual(sum(p["Count"] for p in counted), 25)

    def test_parallel_scan_segments_cover_the_table_once(self):
        table = self.resource.Table(self.create("S"))
        with table.batch_writer() as batch:
            for i in range(200):
                batch.put_item(Item={"pk": f"k{i}"})
        seen = []
        for segment in range(4):
            page = table.scan(Segment=segment, TotalSegments=4)
            seen += [i["pk"] for i in page["Items"]]
        self.assertEqual(sorted(seen), sorted(f"k{i}" for i in range(200)))
        # Paged, 7 items at a time, within each segment: every item once (a page goes on from the key it was given).
        paged = []
        for segment in range(4):
            start = None
            while True:
                page = table.scan(Segment=segment, TotalSegments=4, Limit=7, **({"ExclusiveStartKey": start} if start else {}))
                paged += [i["pk"] for i in page["Items"]]
                start = page.get("LastEvaluatedKey")
                if not start:
                    break
        self.assertEqual(sorted(paged), sorted(f"k{i}" for i in range(200)))
        self.assertDdbError(lambda: table.scan(Segment=4, TotalSegments=4), "ValidationException",
                            "The Segment parameter is zero-based and must be less than parameter TotalSegments: Segment: 4 is not less than TotalSegments: 4")

    def test_item_size_limit_and_hostile_bodies(self):
        name = self.create()
        self.ddb.put_item(TableName=name, Item={"pk": {"S": "ok"}, "v": {"S": "x" * (400 * 1024 - 100)}})
        self.assertDdbError(lambda: self.ddb.put_item(TableName=name, Item={"pk": {"S": "big"}, "v": {"S": "x" * (400 * 1024 + 1)}}),
                            "ValidationException", "Item size has exceeded the maximum allowed size")
        self.assertNotIn("Item", self.ddb.get_item(TableName=name, Key={"pk": {"S": "big"}}), "nothing half-written")
        for body in (b"{not json", b"[1,2]", b"", b"\xff\xfe"):
            response = self.raw("DynamoDB_20120810.PutItem", body)
            self.assertEqual(response.status_code, 400, response.text)
            self.assertIn("#", response.json()["__type"])
        deep = {"S": "x"}
        for _ in range(40):
            deep = {"M": {"d": deep}}
        response = self.raw("DynamoDB_20120810.PutItem", {"TableName": name, "Item": {"pk": {"S": "deep"}, "d": deep}})
        self.assertEqual(response.status_code, 400, response.text)
        self.assertIn(response.json()["__type"], ("com.amazon.coral.validate#ValidationException", "com.amazon.coral.service#SerializationException"))
        response = self.raw("DynamoDB_20120810.NoSuchOperation", {})
        self.assertEqual(response.status_code, 400)
        response = self.raw("DynamoDB_20120810.GetItem", {"TableName": name, "Key": {"pk": {"S": "ok"}}})
        self.assertEqual(response.headers["Content-Type"], "application/x-amz-json-1.0")
        import zlib
        self.assertEqual(int(response.headers["x-amz-crc32"]), zlib.crc32(response.content))
        self.assertEqual(self.server.raw("GET", "/health").status, 200)


class BatchAndTransactionTests(DynamoDbTestCase):

    def test_batch_write_and_get(self):
        name = self.create("S")
        other = self.create("S", name=self.name("other"))
        self.ddb.batch_write_item(RequestItems={
            name: [{"PutRequest": {"Item": {"pk": {"S": f"k{i}"}, "v": {"N": str(i)}}}} for i in range(20)],
            other: [{"PutRequest": {"Item": {"pk": {"S": "o"}}}}]})
        got = self.ddb.batch_get_item(RequestItems={name: {"Keys": [{"pk": {"S": f"k{i}"}} for i in range(0, 20, 2)] + [{"pk": {"S": "absent"}}],
                                                           "ProjectionExpression": "v"},
                                                    other: {"Keys": [{"pk": {"S": "o"}}]}})
        self.assertEqual(sorted(int(i["v"]["N"]) for i in got["Responses"][name]), list(range(0, 20, 2)))
        self.assertEqual(got["Responses"][other], [{"pk": {"S": "o"}}])
        self.assertEqual(got["UnprocessedKeys"], {})
        self.ddb.batch_write_item(RequestItems={name: [{"DeleteRequest": {"Key": {"pk": {"S": f"k{i}"}}}} for i in range(10)]})
        self.assertEqual(self.ddb.scan(TableName=name, Select="COUNT")["Count"], 10)
        self.assertDdbError(lambda: self.ddb.batch_write_item(RequestItems={name: [{"PutRequest": {"Item": {"pk": {"S": f"z{i}"}}}} for i in range(26)]}),
                            "ValidationException")
        self.assertDdbError(lambda: self.ddb.batch_write_item(RequestItems={name: [{"PutRequest": {"Item": {"pk": {"S": "d"}}}}, {"DeleteRequest": {"Key": {"pk": {"S": "d"}}}}]}),
                            "ValidationException", "Provided list of item keys contains duplicates")
        self.assertDdbError(lambda: self.ddb.batch_get_item(RequestItems={name: {"Keys": [{"pk": {"S": f"x{i}"}} for i in range(101)]}}),
                            "ValidationException", "Too many items requested for the BatchGetItem call")

    def test_transactions_are_all_or_nothing(self):
        name = self.create("S")
        self.ddb.put_item(TableName=name, Item={"pk": {"S": "acct1"}, "balance": {"N": "100"}})
        self.ddb.put_item(TableName=name, Item={"pk": {"S": "acct2"}, "balance": {"N": "0"}})

        def transfer(amount):
            return self.ddb.transact_write_items(TransactItems=[
                {"Update": {"TableName": name, "Key": {"pk": {"S": "acct1"}}, "UpdateExpression": "SET balance = balance - :a",
                            "ConditionExpression": "balance >= :a", "ExpressionAttributeValues": {":a": {"N": str(amount)}}}},
                {"Update": {"TableName": name, "Key": {"pk": {"S": "acct2"}}, "UpdateExpression": "SET balance = balance + :a",
                            "ExpressionAttributeValues": {":a": {"N": str(amount)}}}},
                {"Put": {"TableName": name, "Item": {"pk": {"S": f"log-{amount}"}}, "ConditionExpression": "attribute_not_exists(pk)"}},
            ])
        transfer(60)
        response = self.assertDdbError(lambda: transfer(60), "TransactionCanceledException",
                                       "Transaction cancelled, please refer cancellation reasons for specific reasons [ConditionalCheckFailed, None, ConditionalCheckFailed]")
        self.assertEqual([r["Code"] for r in response["CancellationReasons"]], ["ConditionalCheckFailed", "None", "ConditionalCheckFailed"])
        balances = self.ddb.transact_get_items(TransactItems=[{"Get": {"TableName": name, "Key": {"pk": {"S": p}}}} for p in ("acct1", "acct2", "nope")])["Responses"]
        self.assertEqual([r.get("Item", {}).get("balance", {}).get("N") for r in balances], ["40", "60", None])
        self.assertDdbError(lambda: self.ddb.transact_write_items(TransactItems=[
            {"Put": {"TableName": name, "Item": {"pk": {"S": "same"}}}}, {"Delete": {"TableName": name, "Key": {"pk": {"S": "same"}}}}]),
            "ValidationException", "Transaction request cannot include multiple operations on one item")
        check = self.assertDdbError(lambda: self.ddb.transact_write_items(TransactItems=[
            {"ConditionCheck": {"TableName": name, "Key": {"pk": {"S": "acct1"}}, "ConditionExpression": "balance > :z",
                                "ExpressionAttributeValues": {":z": {"N": "1000"}}, "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}},
            {"Delete": {"TableName": name, "Key": {"pk": {"S": "acct2"}}}}]), "TransactionCanceledException")
        self.assertEqual(check["CancellationReasons"][0]["Item"]["balance"], {"N": "40"})
        self.assertIn("Item", self.ddb.get_item(TableName=name, Key={"pk": {"S": "acct2"}}), "the delete did not happen")

    def test_client_request_token_makes_a_retry_harmless(self):
        name = self.create("S")
        items = [{"Update": {"TableName": name, "Key": {"pk": {"S": "c"}}, "UpdateExpression": "ADD n :one",
                             "ExpressionAttributeValues": {":one": {"N": "1"}}}}]
        for _ in range(3):
            self.ddb.transact_write_items(TransactItems=items, ClientRequestToken="retry-token-1")
        self.assertEqual(self.ddb.get_item(TableName=name, Key={"pk": {"S": "c"}})["Item"]["n"], {"N": "1"}, "applied once")
        items[0]["Update"]["ExpressionAttributeValues"][":one"] = {"N": "5"}
        self.assertDdbError(lambda: self.ddb.transact_write_items(TransactItems=items, ClientRequestToken="retry-token-1"),
                            "IdempotentParameterMismatchException")
        self.ddb.transact_write_items(TransactItems=items, ClientRequestToken="retry-token-2")
        self.assertEqual(self.ddb.get_item(TableName=name, Key={"pk": {"S": "c"}})["Item"]["n"], {"N": "6"})

    def test_concurrent_conditional_increments_lose_nothing(self):
        name = self.create("S")
        self.ddb.put_item(TableName=name, Item={"pk": {"S": "counter"}, "n": {"N": "0"}})
        errors = []

        def worker():
            client = h.boto3_client(self.server.url, "dynamodb")
            for _ in range(25):
                try:
                    client.update_item(TableName=name, Key={"pk": {"S": "counter"}}, UpdateExpression="ADD n :one",
                                       ExpressionAttributeValues={":one": {"N": "1"}})
                except Exception as e:  # noqa: BLE001 - collected and asserted below
                    errors.append(e)
        threads = [threading.Thread(target=worker) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])
        self.assertEqual(self.ddb.get_item(TableName=name, Key={"pk": {"S": "counter"}})["Item"]["n"], {"N": "200"})


class TtlAndDurabilityTests(DynamoDbTestCase):

    def test_ttl_removes_expired_items_as_service_deletions(self):
        name = self.create("S", StreamSpecification={"StreamEnabled": True, "StreamViewType": "OLD_IMAGE"})
        self.ddb.update_time_to_live(TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires"})
        self.assertDdbError(lambda: self.ddb.update_time_to_live(TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires"}),
                            "ValidationException", "TimeToLive is already enabled")
        now = int(time.time())
        self.ddb.put_item(TableName=name, Item={"pk": {"S": "gone"}, "expires": {"N": str(now - 10)}})
        self.ddb.put_item(TableName=name, Item={"pk": {"S": "later"}, "expires": {"N": str(now + 3600)}})
        self.ddb.put_item(TableName=name, Item={"pk": {"S": "ancient"}, "expires": {"N": str(now - 6 * 365 * 86400)}})
        self.ddb.put_item(TableName=name, Item={"pk": {"S": "text"}, "expires": {"S": "soon"}})
        deadline = time.monotonic() + 15
        while "Item" in self.ddb.get_item(TableName=name, Key={"pk": {"S": "gone"}}) and time.monotonic() < deadline:
            time.sleep(0.2)
        self.assertNotIn("Item", self.ddb.get_item(TableName=name, Key={"pk": {"S": "gone"}}))
        for kept in ("later", "ancient", "text"):
            self.assertIn("Item", self.ddb.get_item(TableName=name, Key={"pk": {"S": kept}}), kept)
        streams = h.boto3_client(self.server.url, "dynamodbstreams")
        arn = self.ddb.describe_table(TableName=name)["Table"]["LatestStreamArn"]
        shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
        iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        removal = [r for r in streams.get_records(ShardIterator=iterator)["Records"] if r["eventName"] == "REMOVE"]
        self.assertEqual(len(removal), 1)
        self.assertEqual(removal[0]["userIdentity"], {"Type": "Service", "PrincipalId": "dynamodb.amazonaws.com"})
        self.assertEqual(removal[0]["dynamodb"]["OldImage"]["pk"], {"S": "gone"})

    def test_acknowledged_writes_survive_kill_9(self):
        data_dir = Path(tempfile.mkdtemp(prefix="lamina-it-ddb-"))
        self.addCleanup(shutil.rmtree, data_dir, True)
        first = h.LaminaServer("ddb-kill-1", data_dir=data_dir).start()
        try:
            client = h.boto3_client(first.url, "dynamodb")
            client.create_table(TableName="durable", KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                                AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST")
            acknowledged = []
            for i in range(50):
                client.put_item(TableName="durable", Item={"pk": {"S": f"k{i}"}, "n": {"N": str(i)}})
                acknowledged.append(f"k{i}")
            client.transact_write_items(TransactItems=[{"Put": {"TableName": "durable", "Item": {"pk": {"S": f"t{i}"}}}} for i in range(10)])
        finally:
            first.kill()
        second = h.LaminaServer("ddb-kill-2", data_dir=data_dir).start()
        try:
            client = h.boto3_client(second.url, "dynamodb")
            keys = {i["pk"]["S"] for i in client.scan(TableName="durable")["Items"]}
            self.assertEqual(keys, set(acknowledged) | {f"t{i}" for i in range(10)})
        finally:
            second.stop()


    def test_disk_full_refuses_writes_cleanly_and_recovers(self):
        """RELIABILITY.md's disk-full row: SQLITE_FULL rolls the batch back, the caller gets DynamoDB's 500, nothing is
        half-written, and once space is freed writes succeed again without repair."""
        mount = self.small_file_system("ddb-full")
        server = h.LaminaServer("ddb-full", data_dir=mount / "data").start()
        try:
            client = h.boto3_client(server.url, "dynamodb")
            client.create_table(TableName="full", KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                                AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST")
            filler = mount / "filler"
            free = shutil.disk_usage(mount).free
            with open(filler, "wb") as f:
                f.write(b"\0" * max(0, free - 6 * 1024 * 1024))
            acknowledged, refused = [], None
            for i in range(60):
                try:
                    client.put_item(TableName="full", Item={"pk": {"S": f"k{i}"}, "v": {"S": "x" * 300_000}})
                    acknowledged.append(f"k{i}")
                except botocore.exceptions.ClientError as e:
                    refused = e.response
                    break
            self.assertIsNotNone(refused, "the disk never filled")
            self.assertEqual((refused["ResponseMetadata"]["HTTPStatusCode"], refused["Error"]["Code"]), (500, "InternalServerError"))
            self.assertEqual(server.raw("GET", "/health").status, 200)
            filler.unlink()
            client.put_item(TableName="full", Item={"pk": {"S": "after"}, "v": {"S": "y"}})
            keys = {i["pk"]["S"] for page in client.get_paginator("scan").paginate(TableName="full", ProjectionExpression="pk") for i in page["Items"]}
            self.assertEqual(keys, set(acknowledged) | {"after"}, "every acknowledged write, nothing of the refused one")
        finally:
            server.stop()


class JsSdkTests(DynamoDbTestCase):

    def test_client_and_document_client_from_node(self):
        done = subprocess.run([str(h.REPO_ROOT / "tests/integration/prepare_js_dynamodb.sh")], capture_output=True, text=True, timeout=600)
        self.assertEqual(done.returncode, 0, done.stderr[-3000:])
        modules = done.stdout.strip().splitlines()[-1]
        name = self.create("S", "N")
        script = """
        const { DynamoDBClient, DescribeTableCommand, QueryCommand } = require("@aws-sdk/client-dynamodb");
        const { DynamoDBDocumentClient, PutCommand, UpdateCommand, QueryCommand: DocQuery, TransactWriteCommand } = require("@aws-sdk/lib-dynamodb");
        (async () => {
          const client = new DynamoDBClient({ endpoint: process.env.URL, region: "us-east-1",
                                              credentials: { accessKeyId: "test", secretAccessKey: "test" }, maxAttempts: 1 });
          const docs = DynamoDBDocumentClient.from(client);
          const TableName = process.env.TABLE;
          const described = await client.send(new DescribeTableCommand({ TableName }));
          for (let i = 0; i < 3; i++) await docs.send(new PutCommand({ TableName, Item: { pk: "js", sk: i, tags: new Set(["a"]), m: { x: [1, "two"] } } }));
          const up = await docs.send(new UpdateCommand({ TableName, Key: { pk: "js", sk: 1 }, UpdateExpression: "SET m.x[1] = :v ADD tags :t",
                                                        ExpressionAttributeValues: { ":v": "TWO", ":t": new Set(["b"]) }, ReturnValues: "ALL_NEW" }));
          const q = await docs.send(new DocQuery({ TableName, KeyConditionExpression: "pk = :p AND sk > :s", ExpressionAttributeValues: { ":p": "js", ":s": 0 } }));
          let cancelled = null;
          try {
            await docs.send(new TransactWriteCommand({ TransactItems: [{ Put: { TableName, Item: { pk: "js", sk: 0 }, ConditionExpression: "attribute_not_exists(pk)" } }] }));
          } catch (e) { cancelled = { name: e.name, reasons: e.CancellationReasons.map((r) => r.Code) }; }
          let missing = null;
          try { await client.send(new QueryCommand({ TableName: "no-such-table", KeyConditionExpression: "pk = :p", ExpressionAttributeValues: { ":p": { S: "x" } } })); }
          catch (e) { missing = e.name; }
          console.log(JSON.stringify({ status: described.Table.TableStatus, updated: { x: up.Attributes.m.x, tags: [...up.Attributes.tags].sort() },
                                        sks: q.Items.map((i) => i.sk), cancelled, missing }));
        })().catch((e) => { console.error(e); process.exit(1); });
        """
        run = subprocess.run(["node", "-e", script], capture_output=True, text=True, timeout=120,
                             env={"NODE_PATH": modules, "URL": self.server.url, "TABLE": name, "PATH": "/usr/bin:/bin"})
        self.assertEqual(run.returncode, 0, run.stderr[-3000:])
        result = json.loads(run.stdout.strip().splitlines()[-1])
        self.assertEqual(result, {"status": "ACTIVE", "updated": {"x": [1, "TWO"], "tags": ["a", "b"]}, "sks": [1, 2],
                                  "cancelled": {"name": "TransactionCanceledException", "reasons": ["ConditionalCheckFailed"]},
                                  "missing": "ResourceNotFoundException"})


class PartiQLTests(DynamoDbTestCase):

    def test_select_insert_update_delete(self):
        name = self.create("S", "N")
        run = self.ddb.execute_statement
        run(Statement=f'INSERT INTO "{name}" VALUE {{\'pk\': \'u1\', \'sk\': 1, \'name\': \'Ann\', \'tags\': <<\'a\', \'b\'>>, \'m\': {{\'x\': [1, true, null]}}}}')
        run(Statement=f'INSERT INTO "{name}" VALUE {{\'pk\': ?, \'sk\': ?, \'name\': ?}}', Parameters=[{"S": "u1"}, {"N": "2"}, {"S": "Bo"}])
        run(Statement=f'INSERT INTO "{name}" VALUE {{\'pk\': \'u2\', \'sk\': 1, \'status\': \'new\'}}')
        self.assertDdbError(lambda: run(Statement=f'INSERT INTO "{name}" VALUE {{\'pk\': \'u1\', \'sk\': 1}}'), "DuplicateItemException",
                            "Duplicate primary key exists in table")
        items = run(Statement=f'SELECT * FROM "{name}" WHERE pk = ? AND sk >= 1', Parameters=[{"S": "u1"}])["Items"]
        self.assertEqual([i["sk"]["N"] for i in items], ["1", "2"])
        self.assertEqual(items[0]["m"], {"M": {"x": {"L": [{"N": "1"}, {"BOOL": True}, {"NULL": True}]}}})
        projected = run(Statement=f'SELECT name, m.x[0] FROM "{name}" WHERE pk = \'u1\' AND sk = 1')["Items"]
        self.assertEqual(projected, [{"name": {"S": "Ann"}, "m": {"M": {"x": {"L": [{"N": "1"}]}}}}])
        scanned = run(Statement=f'SELECT pk FROM "{name}" WHERE status = \'new\' OR name IN [\'Bo\']')["Items"]
        self.assertEqual(sorted(i["pk"]["S"] for i in scanned), ["u1", "u2"])
        self.assertEqual(len(run(Statement=f'SELECT * FROM "{name}" WHERE begins_with(name, \'A\') AND status IS MISSING')["Items"]), 1)
        run(Statement=f'UPDATE "{name}" SET visits = 1 SET name = \'Anne\' REMOVE tags WHERE pk = \'u1\' AND sk = 1')
        run(Statement=f'UPDATE "{name}" SET visits = visits + ? WHERE pk = \'u1\' AND sk = 1 AND visits < 5', Parameters=[{"N": "2"}])
        item = self.ddb.get_item(TableName=name, Key={"pk": {"S": "u1"}, "sk": {"N": "1"}})["Item"]
        self.assertEqual((item["name"], item["visits"], "tags" in item), ({"S": "Anne"}, {"N": "3"}, False))
        self.assertDdbError(lambda: run(Statement=f'UPDATE "{name}" SET visits = 0 WHERE pk = \'u1\' AND sk = 1 AND visits > 100'),
                            "ConditionalCheckFailedException")
        self.assertDdbError(lambda: run(Statement=f'UPDATE "{name}" SET visits = 0 WHERE pk = \'nobody\' AND sk = 1'), "ConditionalCheckFailedException")
        self.assertDdbError(lambda: run(Statement=f'UPDATE "{name}" SET visits = 0 WHERE pk = \'u1\''), "ValidationException")
        run(Statement=f'DELETE FROM "{name}" WHERE pk = \'u2\' AND sk = 1')
        run(Statement=f'DELETE FROM "{name}" WHERE pk = \'u2\' AND sk = 1')  # already gone: nothing to do
        self.assertEqual(len(run(Statement=f'SELECT * FROM "{name}"')["Items"]), 2)
        self.assertDdbError(lambda: run(Statement=f'SELEC * FROM "{name}"'), "ValidationException", contains="Statement wasn't well formed")
        self.assertDdbError(lambda: run(Statement=f'SELECT * FROM "{name}" WHERE pk = ?'), "ValidationException",
                            "Number of parameters in request and statement don't match.")
        cli = self.server.aws_cli("dynamodb", "execute-statement", "--statement", f'SELECT * FROM "{name}" WHERE pk = \'u1\'')
        self.assertEqual(cli.rc, 0, cli)
        self.assertEqual(len(cli.json["Items"]), 2)

    def test_execute_transaction_and_batch_execute_statement(self):
        name = self.create("S", "N")
        self.ddb.execute_transaction(TransactStatements=[
            {"Statement": f'INSERT INTO "{name}" VALUE {{\'pk\': \'a\', \'sk\': 1, \'n\': 10}}'},
            {"Statement": f'INSERT INTO "{name}" VALUE {{\'pk\': ?, \'sk\': 2, \'n\': 20}}', "Parameters": [{"S": "a"}]}])
        got = self.ddb.execute_transaction(TransactStatements=[
            {"Statement": f'SELECT n FROM "{name}" WHERE pk = \'a\' AND sk = 1'},
            {"Statement": f'SELECT * FROM "{name}" WHERE pk = \'a\' AND sk = 9'}])["Responses"]
        self.assertEqual(got, [{"Item": {"n": {"N": "10"}}}, {}])
        cancelled = self.assertDdbError(lambda: self.ddb.execute_transaction(TransactStatements=[
            {"Statement": f'UPDATE "{name}" SET n = n + 1 WHERE pk = \'a\' AND sk = 1'},
            {"Statement": f'UPDATE "{name}" SET n = n + 1 WHERE pk = \'a\' AND sk = 2 AND n > 100'}]), "TransactionCanceledException")
        self.assertEqual([r["Code"] for r in cancelled["CancellationReasons"]], ["None", "ConditionalCheckFailed"])
        self.assertEqual(self.ddb.get_item(TableName=name, Key={"pk": {"S": "a"}, "sk": {"N": "1"}})["Item"]["n"], {"N": "10"}, "nothing applied")
        self.assertDdbError(lambda: self.ddb.execute_transaction(TransactStatements=[
            {"Statement": f'SELECT * FROM "{name}" WHERE pk = \'a\' AND sk = 1'},
            {"Statement": f'DELETE FROM "{name}" WHERE pk = \'a\' AND sk = 1'}]), "ValidationException")
        batch = self.ddb.batch_execute_statement(Statements=[
            {"Statement": f'SELECT * FROM "{name}" WHERE pk = \'a\' AND sk = 2'},
            {"Statement": f'INSERT INTO "{name}" VALUE {{\'pk\': \'a\', \'sk\': 1}}'},
            {"Statement": f'UPDATE "{name}" SET n = 0 WHERE pk = \'a\' AND sk = 1'},
            {"Statement": f'SELECT * FROM "{name}" WHERE pk = \'a\''},
            {"Statement": f'DELETE FROM "{name}" WHERE pk = \'a\' AND sk = 2'}])["Responses"]
        self.assertEqual(batch[0]["Item"]["n"], {"N": "20"})
        self.assertEqual(batch[1]["Error"]["Code"], "DuplicateItem")
        self.assertNotIn("Error", batch[2])
        self.assertEqual(batch[3]["Error"]["Code"], "ValidationError")
        self.assertNotIn("Error", batch[4])
        self.assertEqual([i["sk"]["N"] for i in self.ddb.scan(TableName=name)["Items"]], ["1"])
        self.assertEqual(self.ddb.get_item(TableName=name, Key={"pk": {"S": "a"}, "sk": {"N": "1"}})["Item"]["n"], {"N": "0"})

    def test_select_pages_with_next_token(self):
        name = self.create("S", "N")
        self.ddb.batch_write_item(RequestItems={name: [{"PutRequest": {"Item": {"pk": {"S": "p"}, "sk": {"N": str(i)}}}} for i in range(7)]})
        seen, token = [], None
        while True:
            kwargs = {"NextToken": token} if token else {}
            page = self.ddb.execute_statement(Statement=f'SELECT sk FROM "{name}" WHERE pk = \'p\'', Limit=3, **kwargs)
            seen += [int(i["sk"]["N"]) for i in page["Items"]]
            token = page.get("NextToken")
            if not token:
                break
        self.assertEqual(seen, list(range(7)))


class FuzzTests(DynamoDbTestCase):

    def test_mutated_requests_never_get_a_500(self):
        """A seeded run of valid requests with members removed, retyped and replaced by odd values: every answer is
        a 200 or an AWS-shaped 4xx (never a 500, never a stack trace), and the server stays healthy."""
        import random
        rng = random.Random(int(__import__("os").environ.get("LAMINA_FUZZ_SEED", "21")))
        name = self.create("S", "N", ExtraAttributes=[{"AttributeName": "g", "AttributeType": "S"}],
                           GlobalSecondaryIndexes=[{"IndexName": "byG", "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}], "Projection": {"ProjectionType": "ALL"}}],
                           StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"})
        key = {"pk": {"S": "k"}, "sk": {"N": "1"}}
        seeds = [
            ("PutItem", {"TableName": name, "Item": {**key, "g": {"S": "x"}, "l": {"L": [{"N": "1"}]}}, "ConditionExpression": "attribute_not_exists(pk)"}),
            ("GetItem", {"TableName": name, "Key": key, "ProjectionExpression": "#a, l[0]", "ExpressionAttributeNames": {"#a": "g"}}),
            ("UpdateItem", {"TableName": name, "Key": key, "UpdateExpression": "SET a = if_not_exists(a, :z) + :o ADD s :s REMOVE l[0]",
                            "ExpressionAttributeValues": {":z": {"N": "0"}, ":o": {"N": "1"}, ":s": {"SS": ["q"]}}, "ReturnValues": "ALL_NEW"}),
            ("DeleteItem", {"TableName": name, "Key": key, "ConditionExpression": "a > :v", "ExpressionAttributeValues": {":v": {"N": "5"}}}),
            ("Query", {"TableName": name, "KeyConditionExpression": "pk = :p AND sk BETWEEN :a AND :b", "FilterExpression": "contains(s, :q)",
                       "ExpressionAttributeValues": {":p": {"S": "k"}, ":a": {"N": "0"}, ":b": {"N": "9"}, ":q": {"S": "q"}}, "Limit": 5}),
            ("Query", {"TableName": name, "IndexName": "byG", "KeyConditionExpression": "g = :g", "ExpressionAttributeValues": {":g": {"S": "x"}}}),
            ("Scan", {"TableName": name, "Segment": 0, "TotalSegments": 2, "ExclusiveStartKey": key}),
            ("BatchWriteItem", {"RequestItems": {name: [{"PutRequest": {"Item": {"pk": {"S": "b"}, "sk": {"N": "2"}}}}, {"DeleteRequest": {"Key": key}}]}}),
            ("BatchGetItem", {"RequestItems": {name: {"Keys": [key]}}}),
            ("TransactWriteItems", {"TransactItems": [{"Put": {"TableName": name, "Item": {"pk": {"S": "t"}, "sk": {"N": "3"}}}},
                                                      {"ConditionCheck": {"TableName": name, "Key": key, "ConditionExpression": "attribute_exists(pk)"}}]}),
            ("TransactGetItems", {"TransactItems": [{"Get": {"TableName": name, "Key": key}}]}),
            ("ExecuteStatement", {"Statement": f'SELECT * FROM "{name}" WHERE pk = ? AND sk > 0', "Parameters": [{"S": "k"}]}),
            ("UpdateTable", {"TableName": name, "StreamSpecification": {"StreamEnabled": True, "StreamViewType": "KEYS_ONLY"}}),
            ("UpdateTimeToLive", {"TableName": name, "TimeToLiveSpecification": {"Enabled": True, "AttributeName": "ttl"}}),
            ("CreateTable", {"TableName": name + "x", "KeySchema": [{"AttributeName": "a", "KeyType": "HASH"}],
                             "AttributeDefinitions": [{"AttributeName": "a", "AttributeType": "S"}], "BillingMode": "PAY_PER_REQUEST"}),
            ("DescribeTable", {"TableName": name}),
        ]
        odd = [None, "", "x" * 5000, -1, 0, 10 ** 30, 1.5, True, [], {}, [None], {"S": None}, {"N": "1e999"}, {"N": "NaN"}, {"B": "!!"},
               {"SS": []}, {"M": {"a": {"L": [{}]}}}, "SET", "a = = b", "#", ":", "((((", "\u0000", "\ud7ff\uffff", {"NULL": False}]

        def mutate(value, depth=0):
            if isinstance(value, dict) and value and rng.random() < 0.7:
                value = dict(value)
                k = rng.choice(list(value))
                action = rng.random()
                if action < 0.3:
                    del value[k]
                elif action < 0.7 or depth > 4:
                    value[k] = rng.choice(odd)
                else:
                    value[k] = mutate(value[k], depth + 1)
                return value
            if isinstance(value, list) and value and rng.random() < 0.7:
                value = list(value)
                i = rng.randrange(len(value))
                value[i] = mutate(value[i], depth + 1) if rng.random() < 0.5 else rng.choice(odd)
                return value
            return rng.choice(odd) if rng.random() < 0.3 else value

        count = int(__import__("os").environ.get("LAMINA_FUZZ_COUNT", "1500"))
        for n in range(count):
            op, body = rng.choice(seeds)
            mutated = mutate(body)
            try:
                payload = json.dumps(mutated).encode()
            except (TypeError, ValueError):
                continue
            response = self.raw("DynamoDB_20120810." + op, payload)
            with self.subTest(n=n, op=op):
                self.assertIn(response.status_code, (200, 400, 413), f"{op} {payload[:500]!r} -> {response.status_code} {response.text[:500]}")
                if response.status_code != 200:
                    error = response.json()
                    self.assertRegex(error["__type"], r"^com\.amazon(aws\.dynamodb\.v20120810|\.coral\.validate|\.coral\.service)#\w+$")
                    self.assertNotIn(" at Lamina.", error.get("message", ""))
        self.assertEqual(self.server.raw("GET", "/health").status, 200)
        self.ddb.describe_table(TableName=name)
