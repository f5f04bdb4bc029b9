using System.Text.Json.Nodes;

namespace Lamina.Server.CloudFormation;

/// <summary>AWS::Serverless::Function: the function, its role, its events, its alias and versions, URL and invoke config.</summary>
internal sealed partial class SamTransform
{
    private static readonly string[] PassedProperties =
        ["FunctionName", "Description", "MemorySize", "Timeout", "Handler", "Runtime", "Environment", "VpcConfig", "Layers", "Architectures", "EphemeralStorage",
         "KmsKeyArn", "FileSystemConfigs", "ImageConfig", "PackageType", "CodeSigningConfigArn", "SnapStart", "RuntimeManagementConfig", "LoggingConfig",
         "RecursiveLoop", "ReservedConcurrentExecutions", "DurableConfig"];

    private static readonly Dictionary<string, string> ManagedPolicies = new(StringComparer.Ordinal)
    {
        ["AWSLambdaBasicExecutionRole"] = BasicExecutionRole,
        ["AWSLambdaSQSQueueExecutionRole"] = "arn:aws:iam::aws:policy/service-role/AWSLambdaSQSQueueExecutionRole",
        ["AWSLambdaDynamoDBExecutionRole"] = "arn:aws:iam::aws:policy/service-role/AWSLambdaDynamoDBExecutionRole",
        ["AWSLambdaKinesisExecutionRole"] = "arn:aws:iam::aws:policy/service-role/AWSLambdaKinesisExecutionRole",
        ["AWSLambdaVPCAccessExecutionRole"] = "arn:aws:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole",
        ["AWSLambdaRole"] = "arn:aws:iam::aws:policy/service-role/AWSLambdaRole",
        ["AWSXrayWriteOnlyAccess"] = "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess",
    };

    private static readonly HashSet<string> ShiftingTypes = new(StringComparer.Ordinal)
    {
        "Canary10Percent30Minutes", "Canary10Percent5Minutes", "Canary10Percent10Minutes", "Canary10Percent15Minutes", "Linear10PercentEvery10Minutes",
        "Linear10PercentEvery1Minute", "Linear10PercentEvery2Minutes", "Linear10PercentEvery3Minutes", "AllAtOnce",
    };

    private static readonly string[] CodeProperties = ["CodeUri", "InlineCode", "ImageUri"];

    private readonly Dictionary<string, (JsonArray Configurations, List<string> DependsOn)> _bucketNotifications = new(StringComparer.Ordinal);
    private bool _codeDeployMade;

    /// <summary>How events reach a function: its name (Ref) and ARN, or its alias's when AutoPublishAlias is set.</summary>
    private sealed record Target(JsonObject Ref, JsonObject Arn, string SubArn);

    private void Function(string logicalId, JsonObject resource, JsonObject p)
    {
        var function = new JsonObject();
        var codeSources = CodeProperties.Count(p.ContainsKey);
        if (codeSources > 1)
        {
            throw Invalid(logicalId, "Specify only one of 'CodeUri', 'InlineCode' or 'ImageUri'.");
        }
        if (p["InlineCode"] is { } inline)
        {
            function["Code"] = new JsonObject { ["ZipFile"] = inline.DeepClone() };
        }
        else if (p["ImageUri"] is { } image)
        {
            function["Code"] = new JsonObject { ["ImageUri"] = image.DeepClone() };
        }
        else if (p["CodeUri"] is { } codeUri)
        {
            function["Code"] = S3Location(logicalId, "CodeUri", codeUri, "S3Bucket", "S3Key", "S3ObjectVersion");
        }
        else
        {
            throw Invalid(logicalId, "Either 'InlineCode' or 'CodeUri' must be set.");
        }
        foreach (var name in PassedProperties)
        {
            if (p[name] is { } value)
            {
                function[name] = value.DeepClone();
            }
        }
        if (p["Tracing"] is { } tracing)
        {
            function["TracingConfig"] = new JsonObject { ["Mode"] = tracing.DeepClone() };
        }
        if (p["DeadLetterQueue"] is JsonObject deadLetter)
        {
            function["DeadLetterConfig"] = new JsonObject { ["TargetArn"] = deadLetter["TargetArn"]?.DeepClone() };
        }
        var events = p["Events"] as JsonObject ?? [];
        var managed = new List<JsonNode> { JsonValue.Create(BasicExecutionRole) };
        var inlinePolicies = new JsonArray();
        if (p["Role"] is { } role)
        {
            function["Role"] = role.DeepClone();
        }
        else
        {
            function["Role"] = GetAtt(logicalId + "Role", "Arn");
        }
        function["Tags"] = TagList(p["Tags"]);
        var lambda = Resource("AWS::Lambda::Function", function);
        PassThrough(resource, lambda);
        Add(logicalId, lambda);

        // AutoPublishAlias: a version per code (and environment, memory) and an alias that events go through.
        Target target = new(Ref(logicalId), GetAtt(logicalId, "Arn"), logicalId + ".Arn");
        string? aliasId = null;
        string? aliasName = null;
        if (p["AutoPublishAlias"] is { } aliasNode)
        {
            aliasName = Text(ResolveParameter(aliasNode)) ?? throw Invalid(logicalId, "AutoPublishAlias must be a string or a Ref to a parameter.");
            if (!AliasName().IsMatch(aliasName))
            {
                throw Invalid(logicalId, $"AutoPublishAlias name ('{aliasName}') must contain only alphanumeric characters, hyphens, or underscores matching (?!^[0-9]+$)([a-zA-Z0-9-_]+) pattern.");
            }
            var hashed = ResolveParameterRefs(function["Code"]) as JsonObject ?? [];
            if (function["Environment"] is JsonObject environment && environment.Count > 0)
            {
                foreach (var (key, value) in environment)
                {
                    hashed[key] = value?.DeepClone();
                }
            }
            if (function["MemorySize"] is { } memory)
            {
                hashed["MemorySize"] = memory.DeepClone();
            }
            var versionId = logicalId + "Version" + (p["AutoPublishCodeSha256"] is { } sha ? Intrinsics.Stringify(sha)[..Math.Min(10, Intrinsics.Stringify(sha).Length)] : Hash(hashed)[..10]);
            var versionProperties = new JsonObject { ["FunctionName"] = Ref(logicalId) };
            if (p["VersionDescription"] is { } description)
            {
                versionProperties["Description"] = description.DeepClone();
            }
            var version = Resource("AWS::Lambda::Version", versionProperties);
            version["DeletionPolicy"] = p["VersionDeletionPolicy"]?.DeepClone() ?? "Retain";
            PassCondition(resource, version);
            Add(versionId, version);
            aliasId = logicalId + "Alias" + aliasName.Replace("-", "D", StringComparison.Ordinal).Replace("_", "U", StringComparison.Ordinal);
            var aliasProperties = new JsonObject { ["Name"] = aliasName, ["FunctionName"] = Ref(logicalId), ["FunctionVersion"] = GetAtt(versionId, "Version") };
            if (p["ProvisionedConcurrencyConfig"] is { } provisioned)
            {
                aliasProperties["ProvisionedConcurrencyConfig"] = provisioned.DeepClone();
            }
            var alias = Resource("AWS::Lambda::Alias", aliasProperties);
            PassCondition(resource, alias);
            Add(aliasId, alias);
            _renamed[logicalId + ".Alias"] = aliasId;
            _renamed[logicalId + ".Version"] = versionId;
            target = new Target(Ref(aliasId), Ref(aliasId), aliasId);
            if (p["DeploymentPreference"] is JsonObject preference)
            {
                DeploymentPreference(logicalId, aliasId, alias, preference, resource);
            }
        }
        else if (p["DeploymentPreference"] is not null)
        {
            throw Invalid(logicalId, "'DeploymentPreference' needs 'AutoPublishAlias': traffic shifts between versions of an alias.");
        }

        foreach (var (eventId, node) in events)
        {
            if (node is not JsonObject definition || definition["Type"] is not JsonValue typeNode)
            {
                throw InvalidEvent((logicalId, eventId), "Event must have a Type.");
            }
            Event(logicalId, resource, eventId, Intrinsics.Stringify(typeNode), definition["Properties"] as JsonObject ?? [], target, managed);
        }

        if (p["FunctionUrlConfig"] is JsonObject url)
        {
            var urlProperties = new JsonObject { ["TargetFunctionArn"] = target.Ref.DeepClone(), ["AuthType"] = url["AuthType"]?.DeepClone() };
            foreach (var name in new[] { "Cors", "InvokeMode" })
            {
                if (url[name] is { } value)
                {
                    urlProperties[name] = value.DeepClone();
                }
            }
            var urlResource = Resource("AWS::Lambda::Url", urlProperties);
            PassCondition(resource, urlResource);
            Add(logicalId + "Url", urlResource);
            if (Text(url["AuthType"]) == "NONE")
            {
                AddPermission(logicalId + "UrlPublicPermissions", resource, new JsonObject
                {
                    ["Action"] = "lambda:InvokeFunctionUrl", ["FunctionName"] = target.Ref.DeepClone(), ["Principal"] = "*", ["FunctionUrlAuthType"] = "NONE",
                });
                AddPermission(logicalId + "URLInvokeAllowPublicAccess", resource, new JsonObject
                {
                    ["Action"] = "lambda:InvokeFunction", ["FunctionName"] = target.Ref.DeepClone(), ["Principal"] = "*", ["InvokedViaFunctionUrl"] = true,
                });
            }
        }

        if (p["EventInvokeConfig"] is JsonObject invokeConfig)
        {
            var configProperties = new JsonObject { ["FunctionName"] = Ref(logicalId), ["Qualifier"] = aliasName ?? "$LATEST" };
            foreach (var name in new[] { "MaximumRetryAttempts", "MaximumEventAgeInSeconds" })
            {
                if (invokeConfig[name] is { } value)
                {
                    configProperties[name] = value.DeepClone();
                }
            }
            if (invokeConfig["DestinationConfig"] is JsonObject destinations)
            {
                var config = new JsonObject();
                foreach (var outcome in new[] { "OnSuccess", "OnFailure" })
                {
                    if (destinations[outcome] is JsonObject destination)
                    {
                        if (destination["Destination"] is not { } arn)
                        {
                            throw Invalid(logicalId, $"Destination is required in {outcome}: Lamina does not create a destination queue or topic for it.");
                        }
                        config[outcome] = new JsonObject { ["Destination"] = arn.DeepClone() };
                        inlinePolicies.Add(new JsonObject
                        {
                            ["PolicyName"] = $"{logicalId}EventInvokeConfig{outcome}{Text(destination["Type"]) ?? ""}Policy",
                            ["PolicyDocument"] = new JsonObject { ["Statement"] = new JsonArray(new JsonObject { ["Effect"] = "Allow", ["Resource"] = arn.DeepClone() }) },
                        });
                    }
                }
                configProperties["DestinationConfig"] = config;
            }
            var invokeConfigResource = Resource("AWS::Lambda::EventInvokeConfig", configProperties);
            if (aliasId is not null)
            {
                invokeConfigResource["DependsOn"] = new JsonArray(aliasId);
            }
            PassCondition(resource, invokeConfigResource);
            Add(logicalId + "EventInvokeConfig", invokeConfigResource);
        }

        if (p["Role"] is null)
        {
            Role(logicalId, resource, p, managed, inlinePolicies);
        }
    }

    /// <summary>The function's execution role (recorded by Lamina, as IAM is not enforced): SAM's managed and inline policies kept.</summary>
    private void Role(string logicalId, JsonObject resource, JsonObject p, List<JsonNode> managed, JsonArray inlinePolicies)
    {
        if (Text(p["Tracing"]) == "Active")
        {
            managed.Add(JsonValue.Create(ManagedPolicies["AWSXrayWriteOnlyAccess"]));
        }
        var policies = p["Policies"] switch
        {
            null => new JsonArray(),
            JsonArray list => list,
            var single => new JsonArray(single.DeepClone()),
        };
        var index = 0;
        foreach (var policy in policies)
        {
            switch (policy)
            {
                case JsonValue v when v.TryGetValue<string>(out var name):
                    managed.Add(JsonValue.Create(name.StartsWith("arn:", StringComparison.Ordinal) ? name : ManagedPolicies.GetValueOrDefault(name, "arn:aws:iam::aws:policy/" + name)));
                    break;
                case JsonObject o when o.ContainsKey("Statement"):
                    inlinePolicies.Add(new JsonObject { ["PolicyName"] = $"{logicalId}RolePolicy{index}", ["PolicyDocument"] = o.DeepClone() });
                    index++;
                    break;
                case JsonObject o when IsIntrinsic(o):
                    managed.Add(o.DeepClone());
                    break;
                case JsonObject o when o.Count == 1:
                    // A policy template (S3ReadPolicy: {BucketName: …}): kept by name with its parameters.
                    var (template, parameters) = o.First();
                    inlinePolicies.Add(new JsonObject
                    {
                        ["PolicyName"] = $"{logicalId}RolePolicy{index}",
                        ["PolicyDocument"] = new JsonObject
                        {
                            ["Statement"] = new JsonArray(new JsonObject { ["Effect"] = "Allow", ["Action"] = "sam:" + template, ["Resource"] = "*" }),
                            ["PolicyTemplate"] = new JsonObject { [template] = parameters?.DeepClone() },
                        },
                    });
                    index++;
                    break;
                default:
                    throw Invalid(logicalId, "Each entry of 'Policies' must be a managed policy name or ARN, a policy document with Statement, or a SAM policy template.");
            }
        }
        var distinct = new JsonArray();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var arn in managed)
        {
            if (seen.Add(arn.ToJsonString()))
            {
                distinct.Add(arn.DeepClone());
            }
        }
        var properties = new JsonObject
        {
            ["AssumeRolePolicyDocument"] = p["AssumeRolePolicyDocument"]?.DeepClone() ?? AssumeRole("lambda.amazonaws.com"),
            ["ManagedPolicyArns"] = distinct,
        };
        if (inlinePolicies.Count > 0)
        {
            properties["Policies"] = inlinePolicies;
        }
        properties["Tags"] = TagList(p["Tags"]);
        if (p["PermissionsBoundary"] is { } boundary)
        {
            properties["PermissionsBoundary"] = boundary.DeepClone();
        }
        if (p["RolePath"] is { } path)
        {
            properties["Path"] = path.DeepClone();
        }
        var role = Resource("AWS::IAM::Role", properties);
        PassCondition(resource, role);
        Add(logicalId + "Role", role);
    }

    private static JsonObject AssumeRole(string service) => new()
    {
        ["Version"] = "2012-10-17",
        ["Statement"] = new JsonArray(new JsonObject
        {
            ["Action"] = new JsonArray("sts:AssumeRole"), ["Effect"] = "Allow", ["Principal"] = new JsonObject { ["Service"] = new JsonArray(service) },
        }),
    };

    private void AddPermission(string logicalId, JsonObject owner, JsonObject properties)
    {
        var permission = Resource("AWS::Lambda::Permission", properties);
        PassCondition(owner, permission);
        Add(logicalId, permission);
    }

    private static JsonObject InvokePermission(Target target, string principal) => new()
    {
        ["Action"] = "lambda:InvokeFunction", ["FunctionName"] = target.Ref.DeepClone(), ["Principal"] = principal,
    };

    private static void Copy(JsonObject from, JsonObject to, params string[] names)
    {
        foreach (var name in names)
        {
            if (from[name] is { } value)
            {
                to[name] = value.DeepClone();
            }
        }
    }

    /// <summary>One entry of a function's Events: the resources that connect the source to the function.</summary>
    private void Event(string function, JsonObject owner, string eventId, string type, JsonObject e, Target target, List<JsonNode> managed)
    {
        var id = function + eventId;
        var source = (function, eventId);
        switch (type)
        {
            case "S3":
                {
                    if (e["Bucket"] is not JsonObject { Count: 1 } bucketRef || Text(bucketRef["Ref"]) is not { } bucket
                        || (_input["Resources"] as JsonObject)?[bucket] is not JsonObject bucketResource || Text(bucketResource["Type"]) != "AWS::S3::Bucket")
                    {
                        throw InvalidEvent(source, "S3 events must reference an S3 bucket in the same template.");
                    }
                    var permission = InvokePermission(target, "s3.amazonaws.com");
                    permission["SourceAccount"] = Ref("AWS::AccountId");
                    AddPermission(id + "Permission", owner, permission);
                    var (configurations, dependsOn) = _bucketNotifications.TryGetValue(bucket, out var existing) ? existing : ([], []);
                    var kinds = e["Events"] switch
                    {
                        JsonArray list => list.Select(Text).OfType<string>().ToList(),
                        var single => [Text(single) ?? throw InvalidEvent(source, "Property 'Events' is required.")],
                    };
                    foreach (var kind in kinds)
                    {
                        var configuration = new JsonObject { ["Event"] = kind, ["Function"] = target.Arn.DeepClone() };
                        if (e["Filter"] is { } filter)
                        {
                            configuration["Filter"] = filter.DeepClone();
                        }
                        configurations.Add(configuration);
                    }
                    dependsOn.Add(id + "Permission");
                    _bucketNotifications[bucket] = (configurations, dependsOn);
                    break;
                }
            case "SQS":
                {
                    var mapping = new JsonObject { ["EventSourceArn"] = e["Queue"]?.DeepClone() ?? throw InvalidEvent(source, "Missing required property 'Queue'."), ["FunctionName"] = target.Ref.DeepClone() };
                    Copy(e, mapping, "BatchSize", "Enabled", "MaximumBatchingWindowInSeconds", "FilterCriteria", "FunctionResponseTypes", "ScalingConfig");
                    AddMapping(id, owner, mapping);
                    managed.Add(JsonValue.Create(ManagedPolicies["AWSLambdaSQSQueueExecutionRole"]));
                    break;
                }
            case "DynamoDB" or "Kinesis":
                {
                    var mapping = new JsonObject
                    {
                        ["EventSourceArn"] = e["Stream"]?.DeepClone() ?? throw InvalidEvent(source, "Missing required property 'Stream'."),
                        ["FunctionName"] = target.Ref.DeepClone(),
                    };
                    Copy(e, mapping, "StartingPosition", "StartingPositionTimestamp", "BatchSize", "Enabled", "MaximumBatchingWindowInSeconds", "FilterCriteria",
                        "FunctionResponseTypes", "BisectBatchOnFunctionError", "MaximumRecordAgeInSeconds", "MaximumRetryAttempts", "ParallelizationFactor",
                        "TumblingWindowInSeconds");
                    if (e["DestinationConfig"] is JsonObject destination && destination["OnFailure"] is JsonObject onFailure)
                    {
                        mapping["DestinationConfig"] = new JsonObject { ["OnFailure"] = new JsonObject { ["Destination"] = onFailure["Destination"]?.DeepClone() } };
                    }
                    AddMapping(id, owner, mapping);
                    managed.Add(JsonValue.Create(ManagedPolicies[type == "DynamoDB" ? "AWSLambdaDynamoDBExecutionRole" : "AWSLambdaKinesisExecutionRole"]));
                    break;
                }
            case "SNS":
                {
                    if (e["SqsSubscription"] is JsonValue sqs && sqs.TryGetValue<bool>(out var viaQueue) && viaQueue || e["SqsSubscription"] is JsonObject)
                    {
                        throw InvalidEvent(source, "SqsSubscription is not supported by Lamina's transform: subscribe a queue of the template and give it an SQS event.");
                    }
                    var topic = e["Topic"]?.DeepClone() ?? throw InvalidEvent(source, "Missing required property 'Topic'.");
                    var subscription = new JsonObject { ["Endpoint"] = target.Arn.DeepClone(), ["Protocol"] = "lambda", ["TopicArn"] = topic };
                    Copy(e, subscription, "FilterPolicy", "FilterPolicyScope", "Region", "RedrivePolicy");
                    var resource = Resource("AWS::SNS::Subscription", subscription);
                    PassCondition(owner, resource);
                    Add(id, resource);
                    var permission = InvokePermission(target, "sns.amazonaws.com");
                    permission["SourceArn"] = topic.DeepClone();
                    AddPermission(id + "Permission", owner, permission);
                    break;
                }
            case "Schedule" or "EventBridgeRule" or "CloudWatchEvent":
                {
                    var rule = new JsonObject();
                    if (type == "Schedule")
                    {
                        rule["ScheduleExpression"] = e["Schedule"]?.DeepClone() ?? throw InvalidEvent(source, "Missing required property 'Schedule'.");
                        if (e["Enabled"] is JsonValue enabled && enabled.TryGetValue<bool>(out var on))
                        {
                            rule["State"] = on ? "ENABLED" : "DISABLED";
                        }
                    }
                    else
                    {
                        rule["EventPattern"] = e["Pattern"]?.DeepClone() ?? throw InvalidEvent(source, "Missing required property 'Pattern'.");
                        Copy(e, rule, "EventBusName");
                    }
                    Copy(e, rule, "Name", "Description", "State", "RoleArn");
                    var ruleTarget = new JsonObject { ["Arn"] = target.Arn.DeepClone(), ["Id"] = Text(e["Target"]?["Id"]) ?? id + "LambdaTarget" };
                    Copy(e, ruleTarget, "Input", "InputPath", "InputTransformer", "RetryPolicy");
                    if (e["DeadLetterConfig"] is JsonObject deadLetter && deadLetter["Arn"] is { } deadLetterArn)
                    {
                        ruleTarget["DeadLetterConfig"] = new JsonObject { ["Arn"] = deadLetterArn.DeepClone() };
                    }
                    rule["Targets"] = new JsonArray(ruleTarget);
                    var resource = Resource("AWS::Events::Rule", rule);
                    PassCondition(owner, resource);
                    Add(id, resource);
                    var permission = InvokePermission(target, "events.amazonaws.com");
                    permission["SourceArn"] = GetAtt(id, "Arn");
                    AddPermission(id + "Permission", owner, permission);
                    break;
                }
            case "CloudWatchLogs":
                {
                    // As AWS's transform: the permission for logs.amazonaws.com on the group, and the filter after it
                    // (CloudWatch Logs checks the permission when the filter is put).
                    var group = e["LogGroupName"]?.DeepClone() ?? throw InvalidEvent(source, "Missing required property 'LogGroupName'.");
                    var pattern = e["FilterPattern"]?.DeepClone() ?? throw InvalidEvent(source, "Missing required property 'FilterPattern'.");
                    var permission = InvokePermission(target, "logs.amazonaws.com");
                    permission["SourceArn"] = Sub("arn:aws:logs:${AWS::Region}:${AWS::AccountId}:log-group:${__LogGroupName__}:*",
                        new JsonObject { ["__LogGroupName__"] = group.DeepClone() });
                    AddPermission(id + "Permission", owner, permission);
                    var filter = Resource("AWS::Logs::SubscriptionFilter", new JsonObject
                    {
                        ["LogGroupName"] = group, ["FilterPattern"] = pattern, ["DestinationArn"] = target.Arn.DeepClone(),
                    });
                    filter["DependsOn"] = new JsonArray(id + "Permission");
                    PassCondition(owner, filter);
                    Add(id, filter);
                    break;
                }
            case "ScheduleV2":
                {
                    var schedule = new JsonObject
                    {
                        ["ScheduleExpression"] = e["ScheduleExpression"]?.DeepClone() ?? throw InvalidEvent(source, "Missing required property 'ScheduleExpression'."),
                        ["FlexibleTimeWindow"] = e["FlexibleTimeWindow"]?.DeepClone() ?? new JsonObject { ["Mode"] = "OFF" },
                        ["Name"] = e["Name"]?.DeepClone() ?? id,
                    };
                    Copy(e, schedule, "Description", "State", "GroupName", "StartDate", "EndDate", "ScheduleExpressionTimezone");
                    var scheduleTarget = new JsonObject { ["Arn"] = target.Arn.DeepClone(), ["RoleArn"] = e["RoleArn"]?.DeepClone() ?? GetAtt(id + "Role", "Arn") };
                    Copy(e, scheduleTarget, "Input", "RetryPolicy");
                    schedule["Target"] = scheduleTarget;
                    var resource = Resource("AWS::Scheduler::Schedule", schedule);
                    PassCondition(owner, resource);
                    Add(id, resource);
                    if (e["RoleArn"] is null)
                    {
                        var role = Resource("AWS::IAM::Role", new JsonObject
                        {
                            ["AssumeRolePolicyDocument"] = AssumeRole("scheduler.amazonaws.com"),
                            ["Policies"] = new JsonArray(new JsonObject
                            {
                                ["PolicyName"] = id + "LambdaPolicy",
                                ["PolicyDocument"] = new JsonObject
                                {
                                    ["Statement"] = new JsonArray(new JsonObject { ["Action"] = "lambda:InvokeFunction", ["Effect"] = "Allow", ["Resource"] = target.Arn.DeepClone() }),
                                },
                            }),
                        });
                        PassCondition(owner, role);
                        Add(id + "Role", role);
                    }
                    break;
                }
            case "Api":
                {
                    var path = Text(e["Path"]) ?? throw InvalidEvent(source, "Missing required property 'Path'.");
                    var method = (Text(e["Method"]) ?? throw InvalidEvent(source, "Missing required property 'Method'.")).ToLowerInvariant();
                    string api;
                    string stage;
                    if (e["RestApiId"] is { } restApi)
                    {
                        api = Text((restApi as JsonObject)?["Ref"]) ?? throw InvalidEvent(source, "RestApiId must be a Ref to an AWS::Serverless::Api of this template.");
                        if (!_explicitRoutes.TryGetValue(api, out var routes))
                        {
                            throw InvalidEvent(source, "RestApiId must be a valid reference to an 'AWS::Serverless::Api' resource in same template.");
                        }
                        routes.Add(new ApiRoute(source, path, method, FunctionUri(target), e));
                        var apiProperties = ((_input["Resources"] as JsonObject)?[api] as JsonObject)?["Properties"] as JsonObject;
                        stage = Text(apiProperties?["StageName"]) ?? Text((_input["Globals"] as JsonObject)?["Api"]?["StageName"]) ?? "Prod";
                    }
                    else
                    {
                        api = "ServerlessRestApi";
                        _implicitRest.Add(new ApiRoute(source, path, method, FunctionUri(target), e));
                        stage = Text((_input["Globals"] as JsonObject)?["Api"]?["StageName"]) ?? "Prod";
                    }
                    var permission = InvokePermission(target, "apigateway.amazonaws.com");
                    var methodPart = method == "any" ? "*" : method.ToUpperInvariant();
                    var permissionPath = PathParameter().Replace(path.Length > 1 ? path.TrimEnd('/') : path, "*");
                    permission["SourceArn"] = Sub("arn:aws:execute-api:${AWS::Region}:${AWS::AccountId}:${__ApiId__}/${__Stage__}/" + methodPart + permissionPath,
                        new JsonObject { ["__ApiId__"] = Ref(api), ["__Stage__"] = "*" });
                    AddPermission(id + "Permission" + stage, owner, permission);
                    break;
                }
            case "HttpApi":
                {
                    var path = Text(e["Path"]) ?? "$default";
                    var method = (Text(e["Method"]) ?? "any").ToLowerInvariant();
                    string api;
                    if (e["ApiId"] is { } httpApi)
                    {
                        api = Text((httpApi as JsonObject)?["Ref"]) ?? throw InvalidEvent(source, "ApiId must be a Ref to an AWS::Serverless::HttpApi of this template.");
                        if (!_explicitRoutes.TryGetValue(api, out var routes))
                        {
                            throw InvalidEvent(source, "ApiId must be a valid reference to an 'AWS::Serverless::HttpApi' resource in same template.");
                        }
                        routes.Add(new ApiRoute(source, path, method, FunctionUri(target, http: true), e));
                    }
                    else
                    {
                        api = "ServerlessHttpApi";
                        _implicitHttp.Add(new ApiRoute(source, path, method, FunctionUri(target, http: true), e));
                    }
                    var permission = InvokePermission(target, "apigateway.amazonaws.com");
                    var resourcePath = path == "$default" ? "*" : (method == "any" ? "*" : method.ToUpperInvariant()) + PathParameter().Replace(path.Length > 1 ? path.TrimEnd('/') : path, "*");
                    permission["SourceArn"] = Sub("arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${__ApiId__}/${__Stage__}/" + resourcePath,
                        new JsonObject { ["__ApiId__"] = Ref(api), ["__Stage__"] = "*" });
                    AddPermission(id + "Permission", owner, permission);
                    break;
                }
            default:
                throw InvalidEvent(source, $"Lamina does not connect events of type {type}; it supports S3, SQS, SNS, DynamoDB, Kinesis, Schedule, ScheduleV2, EventBridgeRule, CloudWatchEvent, CloudWatchLogs, Api and HttpApi.");
        }
    }

    private void AddMapping(string id, JsonObject owner, JsonObject mapping)
    {
        var resource = Resource("AWS::Lambda::EventSourceMapping", mapping);
        PassCondition(owner, resource);
        Add(id, resource);
    }

    /// <summary>The integration URI API Gateway invokes the function (or its alias) through.</summary>
    private static JsonObject FunctionUri(Target target, bool http = false) => Sub(
        (http ? "arn:${AWS::Partition}" : "arn:aws") + ":apigateway:${AWS::Region}:lambda:path/2015-03-31/functions/${" + target.SubArn + "}/invocations");

    /// <summary>
    /// DeploymentPreference: the CodeDeploy application, its role and the function's deployment group, and the alias's
    /// UpdatePolicy naming them — Lamina's alias provider shifts traffic by that group's configuration.
    /// </summary>
    private void DeploymentPreference(string function, string aliasId, JsonObject alias, JsonObject preference, JsonObject owner)
    {
        if (preference["Enabled"] is JsonValue enabled && enabled.TryGetValue<bool>(out var on) && !on)
        {
            return;
        }
        var type = preference["Type"] ?? throw Invalid(function, "'DeploymentPreference' is missing required Property 'Type'");
        if (!_codeDeployMade)
        {
            _codeDeployMade = true;
            Add("ServerlessDeploymentApplication", Resource("AWS::CodeDeploy::Application", new JsonObject { ["ComputePlatform"] = "Lambda" }));
            if (preference["Role"] is null)
            {
                Add("CodeDeployServiceRole", Resource("AWS::IAM::Role", new JsonObject
                {
                    ["AssumeRolePolicyDocument"] = AssumeRole("codedeploy.amazonaws.com"),
                    ["ManagedPolicyArns"] = new JsonArray("arn:aws:iam::aws:policy/service-role/AWSCodeDeployRoleForLambda"),
                }));
            }
        }
        var typeText = Text(ResolveParameter(type));
        var group = new JsonObject
        {
            ["ApplicationName"] = Ref("ServerlessDeploymentApplication"),
            ["AutoRollbackConfiguration"] = new JsonObject
            {
                ["Enabled"] = true,
                ["Events"] = new JsonArray("DEPLOYMENT_FAILURE", "DEPLOYMENT_STOP_ON_ALARM", "DEPLOYMENT_STOP_ON_REQUEST"),
            },
            ["DeploymentConfigName"] = DeploymentTypes(typeText is not null ? JsonValue.Create(typeText) : type.DeepClone(), null),
            ["DeploymentStyle"] = new JsonObject { ["DeploymentType"] = "BLUE_GREEN", ["DeploymentOption"] = "WITH_TRAFFIC_CONTROL" },
            ["ServiceRoleArn"] = preference["Role"]?.DeepClone() ?? GetAtt("CodeDeployServiceRole", "Arn"),
        };
        if (preference["Alarms"] is JsonArray alarms)
        {
            group["AlarmConfiguration"] = new JsonObject
            {
                ["Enabled"] = true,
                ["Alarms"] = new JsonArray(alarms.Select(static a => (JsonNode?)new JsonObject { ["Name"] = a?.DeepClone() }).ToArray()),
            };
        }
        var groupResource = Resource("AWS::CodeDeploy::DeploymentGroup", group);
        PassCondition(owner, groupResource);
        Add(function + "DeploymentGroup", groupResource);
        var update = new JsonObject { ["ApplicationName"] = Ref("ServerlessDeploymentApplication"), ["DeploymentGroupName"] = Ref(function + "DeploymentGroup") };
        if (preference["Hooks"] is JsonObject hooks)
        {
            if (hooks["PreTraffic"] is { } pre)
            {
                update["BeforeAllowTrafficHook"] = pre.DeepClone();
            }
            if (hooks["PostTraffic"] is { } post)
            {
                update["AfterAllowTrafficHook"] = post.DeepClone();
            }
        }
        alias["UpdatePolicy"] = new JsonObject { ["CodeDeployLambdaAliasUpdate"] = update };
        _ = aliasId;
    }

    /// <summary>
    /// SAM's short deployment types (<c>Canary10Percent5Minutes</c>, <c>AllAtOnce</c>…) become CodeDeploy's names,
    /// inside intrinsics too (<c>!If [c, Canary10Percent5Minutes, !Ref Custom]</c>), as the reference transform does.
    /// </summary>
    private static JsonNode? DeploymentTypes(JsonNode? value, string? key)
    {
        switch (value)
        {
            case JsonArray list:
                for (var i = 0; i < list.Count; i++)
                {
                    list[i] = DeploymentTypes(list[i]?.DeepClone(), null);
                }
                return list;
            case JsonObject { Count: 1 } intrinsic when intrinsic.First().Key is "Ref" or "Condition" || intrinsic.First().Key.StartsWith("Fn::", StringComparison.Ordinal):
                var (name, inner) = intrinsic.First();
                intrinsic[name] = DeploymentTypes(inner?.DeepClone(), name);
                return intrinsic;
            case JsonValue text when Text(text) is { } type && ShiftingTypes.Contains(type):
                return key == "Fn::Sub"
                    ? new JsonArray("CodeDeployDefault.Lambda${ConfigName}", new JsonObject { ["ConfigName"] = type })
                    : Sub("CodeDeployDefault.Lambda${ConfigName}", new JsonObject { ["ConfigName"] = type });
            default:
                return value;
        }
    }

    /// <summary>S3 events' notifications, added to their buckets once every function has been read.</summary>
    private void ApplyBucketNotifications()
    {
        foreach (var (bucket, (configurations, dependsOn)) in _bucketNotifications)
        {
            if (OutputResources[bucket] is not JsonObject resource)
            {
                continue;
            }
            var properties = resource["Properties"] as JsonObject ?? [];
            resource["Properties"] = properties;
            var notifications = properties["NotificationConfiguration"] as JsonObject ?? [];
            properties["NotificationConfiguration"] = notifications;
            var lambdas = notifications["LambdaConfigurations"] as JsonArray ?? [];
            notifications["LambdaConfigurations"] = lambdas;
            foreach (var configuration in configurations)
            {
                lambdas.Add(configuration?.DeepClone());
            }
            var existing = resource["DependsOn"] switch
            {
                JsonArray list => list.Select(Text).OfType<string>().ToList(),
                JsonValue one => [Text(one)!],
                _ => [],
            };
            resource["DependsOn"] = new JsonArray(existing.Concat(dependsOn).Distinct().Select(static d => (JsonNode?)JsonValue.Create(d)).ToArray());
        }
    }
}
