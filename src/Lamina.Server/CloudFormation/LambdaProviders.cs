using System.IO.Compression;
using System.Text;
using System.Text.Json.Nodes;

namespace Lamina.Server.CloudFormation;

/// <summary>What the Lambda providers share: function names and ARNs, paths, and copying properties across.</summary>
internal static class LambdaPaths
{
    /// <summary>A function reference as templates give it (name, ARN, qualified ARN, name:qualifier) → its name and qualifier.</summary>
    public static (string Name, string? Qualifier) Split(string reference)
    {
        if (reference.StartsWith("arn:", StringComparison.Ordinal))
        {
            var parts = reference.Split(':');
            return parts.Length >= 8 ? (parts[6], parts[7]) : (parts.Length >= 7 ? parts[6] : reference, null);
        }
        var colon = reference.IndexOf(':', StringComparison.Ordinal);
        return colon > 0 ? (reference[..colon], reference[(colon + 1)..]) : (reference, null);
    }

    public static string Function(string name) => "/2015-03-31/functions/" + Uri.EscapeDataString(name);

    public static string Qualifier(string? qualifier) => qualifier is null ? "" : "?Qualifier=" + Uri.EscapeDataString(qualifier);

    /// <summary>Copies the named properties that are present, as they are.</summary>
    public static JsonObject Copy(JsonObject from, JsonObject to, params string[] names)
    {
        foreach (var name in names)
        {
            if (from[name] is { } value)
            {
                to[name] = value.DeepClone();
            }
        }
        return to;
    }

    /// <summary>CloudFormation's tag list ([{Key, Value}]) as Lambda's map.</summary>
    public static JsonObject? Tags(JsonNode? tags)
    {
        if (tags is not JsonArray list)
        {
            return tags as JsonObject;
        }
        var map = new JsonObject();
        foreach (var tag in list.OfType<JsonObject>())
        {
            map[Intrinsics.Stringify(tag["Key"])] = Intrinsics.Stringify(tag["Value"]);
        }
        return map;
    }
}

/// <summary>AWS::Lambda::Function: CreateFunction, UpdateFunctionCode / UpdateFunctionConfiguration, tags, reserved concurrency.</summary>
internal sealed class LambdaFunctionProvider : ResourceProvider
{
    private static readonly string[] ConfigurationProperties =
        ["Role", "Handler", "Description", "Timeout", "MemorySize", "Environment", "Runtime", "Layers", "TracingConfig", "DeadLetterConfig", "EphemeralStorage",
         "LoggingConfig", "KmsKeyArn", "ImageConfig", "VpcConfig", "FileSystemConfigs", "SnapStart", "RuntimeManagementConfig", "DurableConfig"];

    public override string Type => "AWS::Lambda::Function";

    public override string? NameProperty => "FunctionName";

    public override IReadOnlySet<string> CreateOnlyProperties { get; } = Set("FunctionName", "PackageType");

    public override IReadOnlySet<string> AttributeNames { get; } = Set("Arn", "SnapStartResponse", "SnapStartResponse.ApplyOn", "SnapStartResponse.OptimizationStatus");

    public override string? PlannedPhysicalId(ProvisionRequest request) => request.String("FunctionName") is null ? request.GeneratedName(64) : null;

    public override async Task<ProvisionResult> CreateAsync(ProvisionRequest request, CancellationToken cancellationToken)
    {
        var p = request.Properties;
        var name = request.String("FunctionName") ?? request.GeneratedName(64);
        var body = Configuration(p, previous: null);
        body["FunctionName"] = name;
        body["Code"] = Code(p);
        LambdaPaths.Copy(p, body, "PackageType", "Architectures", "CodeSigningConfigArn");
        if (LambdaPaths.Tags(p["Tags"]) is { Count: > 0 } tags)
        {
            body["Tags"] = tags;
        }
        var created = await request.Client.LambdaAsync(HttpMethod.Post, "/2015-03-31/functions", body, cancellationToken);
        var arn = created?["FunctionArn"]?.GetValue<string>() ?? $"arn:aws:lambda:{request.Region}:{request.AccountId}:function:{name}";
        try
        {
            if (request.Int("ReservedConcurrentExecutions") is { } reserved)
            {
                await request.Client.LambdaAsync(HttpMethod.Put, $"/2017-10-31/functions/{Uri.EscapeDataString(name)}/concurrency",
                    new JsonObject { ["ReservedConcurrentExecutions"] = reserved }, cancellationToken);
            }
        }
        catch (ServiceException)
        {
            // Nothing half made: the function goes with the failure.
            await IgnoreNotFoundAsync(() => request.Client.LambdaAsync(HttpMethod.Delete, LambdaPaths.Function(name), null, CancellationToken.None));
            throw;
        }
        return new ProvisionResult(name, new JsonObject { ["Arn"] = arn });
    }

    public override async Task<ProvisionResult> UpdateAsync(ProvisionRequest request, CancellationToken cancellationToken)
    {
        var p = request.Properties;
        var previous = request.PreviousProperties ?? [];
        var name = request.PhysicalId!;
        var arn = request.PreviousAttributes?["Arn"]?.GetValue<string>() ?? $"arn:aws:lambda:{request.Region}:{request.AccountId}:function:{name}";
        if (!JsonNode.DeepEquals(p["Code"], previous["Code"]) || !JsonNode.DeepEquals(p["Architectures"], previous["Architectures"]))
        {
            var code = Code(p);
            LambdaPaths.Copy(p, code, "Architectures");
            await request.Client.LambdaAsync(HttpMethod.Put, LambdaPaths.Function(name) + "/code", code, cancellationToken);
        }
        if (ConfigurationProperties.Any(n => !JsonNode.DeepEquals(p[n], previous[n])))
        {
            await request.Client.LambdaAsync(HttpMethod.Put, LambdaPaths.Function(name) + "/configuration", Configuration(p, previous), cancellationToken);
        }
        var tags = LambdaPaths.Tags(p["Tags"]) ?? [];
        var oldTags = LambdaPaths.Tags(previous["Tags"]) ?? [];
        var removed = oldTags.Select(static t => t.Key).Where(k => !tags.ContainsKey(k)).ToList();
        if (removed.Count > 0)
        {
            await request.Client.LambdaAsync(HttpMethod.Delete, $"/2017-03-31/tags/{Uri.EscapeDataString(arn)}?" + string.Join('&', removed.Select(static k => "tagKeys=" + Uri.EscapeDataString(k))),
                null, cancellationToken);
        }
        if (tags.Count > 0 && !JsonNode.DeepEquals(tags, oldTags))
        {
            await request.Client.LambdaAsync(HttpMethod.Post, $"/2017-03-31/tags/{Uri.EscapeDataString(arn)}", new JsonObject { ["Tags"] = tags.DeepClone() }, cancellationToken);
        }
        if (!JsonNode.DeepEquals(p["ReservedConcurrentExecutions"], previous["ReservedConcurrentExecutions"]))
        {
            var path = $"/2017-10-31/functions/{Uri.EscapeDataString(name)}/concurrency";
            await (request.Int("ReservedConcurrentExecutions") is { } reserved
                ? request.Client.LambdaAsync(HttpMethod.Put, path, new JsonObject { ["ReservedConcurrentExecutions"] = reserved }, cancellationToken)
                : request.Client.LambdaAsync(HttpMethod.Delete, path, null, cancellationToken));
        }
        return new ProvisionResult(name, new JsonObject { ["Arn"] = arn });
    }

    public override Task DeleteAsync(ProvisionRequest request, CancellationToken cancellationToken) =>
        IgnoreNotFoundAsync(() => request.Client.LambdaAsync(HttpMethod.Delete, LambdaPaths.Function(request.PhysicalId!), null, cancellationToken));

    /// <summary>The configuration fields of Create/UpdateFunctionConfiguration; on update, removed ones go back to Lambda's defaults.</summary>
    private static JsonObject Configuration(JsonObject p, JsonObject? previous)
    {
        var body = LambdaPaths.Copy(p, [], "Role", "Handler", "Description", "Timeout", "MemorySize", "Environment", "Runtime", "Layers", "TracingConfig",
            "DeadLetterConfig", "EphemeralStorage", "LoggingConfig", "ImageConfig", "VpcConfig", "FileSystemConfigs", "SnapStart", "RuntimeManagementConfig",
            "DurableConfig");
        if (p["KmsKeyArn"] is { } kms)
        {
            body["KMSKeyArn"] = kms.DeepClone();
        }
        foreach (var number in new[] { "Timeout", "MemorySize" })
        {
            if (body[number] is JsonValue v && v.TryGetValue<string>(out var text) && int.TryParse(text, System.Globalization.CultureInfo.InvariantCulture, out var n))
            {
                body[number] = n;
            }
        }
        if (body["DurableConfig"] is JsonObject durable)
        {
            foreach (var number in new[] { "ExecutionTimeout", "RetentionPeriodInDays" })
            {
                if (durable[number] is JsonValue v && v.TryGetValue<string>(out var text) && int.TryParse(text, System.Globalization.CultureInfo.InvariantCulture, out var n))
                {
                    durable[number] = n;
                }
            }
        }
        if (body["EphemeralStorage"] is JsonObject { } storage && storage["Size"] is JsonValue s && s.TryGetValue<string>(out var size)
            && int.TryParse(size, System.Globalization.CultureInfo.InvariantCulture, out var sizeMb))
        {
            storage["Size"] = sizeMb;
        }
        if (previous is not null)
        {
            body["Description"] ??= "";
            body["Timeout"] ??= 3;
            body["MemorySize"] ??= 128;
            body["Environment"] ??= new JsonObject { ["Variables"] = new JsonObject() };
            body["Layers"] ??= new JsonArray();
            body["EphemeralStorage"] ??= new JsonObject { ["Size"] = 512 };
            if (previous["TracingConfig"] is not null)
            {
                body["TracingConfig"] ??= new JsonObject { ["Mode"] = "PassThrough" };
            }
            if (previous["DeadLetterConfig"] is not null)
            {
                body["DeadLetterConfig"] ??= new JsonObject { ["TargetArn"] = "" };
            }
        }
        return body;
    }

    /// <summary>
    /// The Code property as Lambda takes it: S3Bucket/S3Key/S3ObjectVersion, ImageUri, or ZipFile — which in a template is
    /// the function's source, written to index.py / index.js (by the runtime) in a zip, as CloudFormation does.
    /// </summary>
    private static JsonObject Code(JsonObject p)
    {
        if (p["Code"] is not JsonObject code)
        {
            throw new ServiceException("cloudformation", 400, "InvalidRequest", "#: required key [Code] not found");
        }
        if (code["ZipFile"] is { } source)
        {
            var runtime = Intrinsics.Stringify(p["Runtime"]);
            var file = runtime.StartsWith("python", StringComparison.Ordinal) ? "index.py" : runtime.StartsWith("nodejs", StringComparison.Ordinal) ? "index.js" : "index";
            using var buffer = new MemoryStream();
            using (var zip = new ZipArchive(buffer, ZipArchiveMode.Create, leaveOpen: true))
            {
                var entry = zip.CreateEntry(file);
                entry.ExternalAttributes = Convert.ToInt32("100755", 8) << 16;
                using var stream = entry.Open();
                stream.Write(Encoding.UTF8.GetBytes(Intrinsics.Stringify(source)));
            }
            return new JsonObject { ["ZipFile"] = Convert.ToBase64String(buffer.ToArray()) };
        }
        return LambdaPaths.Copy(code, [], "S3Bucket", "S3Key", "S3ObjectVersion", "ImageUri");
    }
}

/// <summary>AWS::Lambda::Version: PublishVersion. Versions never change; a changed one is a new version.</summary>
internal sealed class LambdaVersionProvider : ResourceProvider
{
    public override string Type => "AWS::Lambda::Version";

    public override bool Updatable => false;

    public override IReadOnlySet<string> AttributeNames { get; } = Set("Version", "FunctionArn");

    public override async Task<ProvisionResult> CreateAsync(ProvisionRequest request, CancellationToken cancellationToken)
    {
        var (name, _) = LambdaPaths.Split(request.RequiredString("FunctionName"));
        var body = LambdaPaths.Copy(request.Properties, [], "Description", "CodeSha256");
        var published = await request.Client.LambdaAsync(HttpMethod.Post, LambdaPaths.Function(name) + "/versions", body, cancellationToken);
        var arn = published!["FunctionArn"]!.GetValue<string>();
        var version = published["Version"]!.GetValue<string>();
        if (request.Properties["ProvisionedConcurrencyConfig"] is JsonObject provisioned && provisioned["ProvisionedConcurrentExecutions"] is { } count)
        {
            await request.Client.LambdaAsync(HttpMethod.Put, $"/2019-09-30/functions/{Uri.EscapeDataString(name)}/provisioned-concurrency?Qualifier={version}",
                new JsonObject { ["ProvisionedConcurrentExecutions"] = int.Parse(Intrinsics.Stringify(count), System.Globalization.CultureInfo.InvariantCulture) }, cancellationToken);
        }
        return new ProvisionResult(arn, new JsonObject { ["Version"] = version, ["FunctionArn"] = arn });
    }

    public override Task DeleteAsync(ProvisionRequest request, CancellationToken cancellationToken)
    {
        var (name, version) = LambdaPaths.Split(request.PhysicalId!);
        return IgnoreNotFoundAsync(() => request.Client.LambdaAsync(HttpMethod.Delete, LambdaPaths.Function(name) + LambdaPaths.Qualifier(version), null, cancellationToken));
    }
}

/// <summary>AWS::Lambda::Alias: CreateAlias / UpdateAlias (with weighted routing) and provisioned concurrency.</summary>
internal sealed class LambdaAliasProvider : ResourceProvider
{
    public override string Type => "AWS::Lambda::Alias";

    public override IReadOnlySet<string> CreateOnlyProperties { get; } = Set("Name", "FunctionName");

    public override IReadOnlySet<string> AttributeNames { get; } = Set("AliasArn");

    public override async Task<ProvisionResult> CreateAsync(ProvisionRequest request, CancellationToken cancellationToken)
    {
        var (function, _) = LambdaPaths.Split(request.RequiredString("FunctionName"));
        var body = Body(request);
        body["Name"] = request.RequiredString("Name");
        var created = await request.Client.LambdaAsync(HttpMethod.Post, LambdaPaths.Function(function) + "/aliases", body, cancellationToken);
        var arn = created!["AliasArn"]!.GetValue<string>();
        await ProvisionedAsync(request, function, cancellationToken);
        return new ProvisionResult(arn, new JsonObject { ["AliasArn"] = arn });
    }

    public override async Task<ProvisionResult> UpdateAsync(ProvisionRequest request, CancellationToken cancellationToken)
    {
        var (function, alias) = LambdaPaths.Split(request.PhysicalId!);
        var body = Body(request);
        body["RoutingConfig"] ??= new JsonObject { ["AdditionalVersionWeights"] = new JsonObject() };
        await request.Client.LambdaAsync(HttpMethod.Put, LambdaPaths.Function(function) + "/aliases/" + Uri.EscapeDataString(alias!), body, cancellationToken);
        await ProvisionedAsync(request, function, cancellationToken);
        return new ProvisionResult(request.PhysicalId!, new JsonObject { ["AliasArn"] = request.PhysicalId });
    }

    public override Task DeleteAsync(ProvisionRequest request, CancellationToken cancellationToken)
    {
        var (function, alias) = LambdaPaths.Split(request.PhysicalId!);
        return IgnoreNotFoundAsync(() => request.Client.LambdaAsync(HttpMethod.Delete, LambdaPaths.Function(function) + "/aliases/" + Uri.EscapeDataString(alias!), null, cancellationToken));
    }

    /// <summary>The alias settings; CloudFormation's weight list becomes Lambda's map.</summary>
    private static JsonObject Body(ProvisionRequest request)
    {
        var body = new JsonObject { ["FunctionVersion"] = request.RequiredString("FunctionVersion"), ["Description"] = request.String("Description") ?? "" };
        if (request.Properties["RoutingConfig"] is JsonObject routing && routing["AdditionalVersionWeights"] is JsonArray weights)
        {
            var map = new JsonObject();
            foreach (var weight in weights.OfType<JsonObject>())
            {
                map[Intrinsics.Stringify(weight["FunctionVersion"])] = double.Parse(Intrinsics.Stringify(weight["FunctionWeight"]), System.Globalization.CultureInfo.InvariantCulture);
            }
            body["RoutingConfig"] = new JsonObject { ["AdditionalVersionWeights"] = map };
        }
        return body;
    }

    private static async Task ProvisionedAsync(ProvisionRequest request, string function, CancellationToken cancellationToken)
    {
        var alias = request.RequiredString("Name");
        var path = $"/2019-09-30/functions/{Uri.EscapeDataString(function)}/provisioned-concurrency?Qualifier={Uri.EscapeDataString(alias)}";
        if (request.Properties["ProvisionedConcurrencyConfig"] is JsonObject provisioned && provisioned["ProvisionedConcurrentExecutions"] is { } count)
        {
            await request.Client.LambdaAsync(HttpMethod.Put, path,
                new JsonObject { ["ProvisionedConcurrentExecutions"] = int.Parse(Intrinsics.Stringify(count), System.Globalization.CultureInfo.InvariantCulture) }, cancellationToken);
        }
        else if (request.PreviousProperties?["ProvisionedConcurrencyConfig"] is not null)
        {
            await request.Client.LambdaAsync(HttpMethod.Delete, path, null, cancellationToken);
        }
    }
}

/// <summary>AWS::Lambda::LayerVersion: PublishLayerVersion; layer versions are immutable.</summary>
internal sealed class LambdaLayerVersionProvider : ResourceProvider
{
    public override string Type => "AWS::Lambda::LayerVersion";

    public override bool Updatable => false;

    public override IReadOnlySet<string> AttributeNames { get; } = Set("LayerVersionArn");

    public override async Task<ProvisionResult> CreateAsync(ProvisionRequest request, CancellationToken cancellationToken)
    {
        var name = request.String("LayerName") ?? request.LogicalId;
        var body = LambdaPaths.Copy(request.Properties, [], "CompatibleRuntimes", "CompatibleArchitectures", "Description", "LicenseInfo");
        body["Content"] = request.Properties["Content"] is JsonObject content
            ? LambdaPaths.Copy(content, [], "S3Bucket", "S3Key", "S3ObjectVersion")
            : throw new ServiceException("cloudformation", 400, "InvalidRequest", "#: required key [Content] not found");
        var published = await request.Client.LambdaAsync(HttpMethod.Post, $"/2018-10-31/layers/{Uri.EscapeDataString(name)}/versions", body, cancellationToken);
        var arn = published!["LayerVersionArn"]!.GetValue<string>();
        return new ProvisionResult(arn, new JsonObject { ["LayerVersionArn"] = arn });
    }

    public override Task DeleteAsync(ProvisionRequest request, CancellationToken cancellationToken)
    {
        // arn:aws:lambda:<region>:<account>:layer:<name>:<version>
        var parts = request.PhysicalId!.Split(':');
        return parts.Length < 8
            ? Task.CompletedTask
            : IgnoreNotFoundAsync(() => request.Client.LambdaAsync(HttpMethod.Delete, $"/2018-10-31/layers/{Uri.EscapeDataString(parts[6])}/versions/{parts[7]}", null, cancellationToken));
    }
}

/// <summary>AWS::Lambda::Permission: AddPermission / RemovePermission (a statement of the function's resource policy).</summary>
internal sealed class LambdaPermissionProvider : ResourceProvider
{
    public override string Type => "AWS::Lambda::Permission";

    public override bool Updatable => false;

    public override async Task<ProvisionResult> CreateAsync(ProvisionRequest request, CancellationToken cancellationToken)
    {
        var (function, qualifier) = LambdaPaths.Split(request.RequiredString("FunctionName"));
        var statementId = request.GeneratedName(100);
        var body = LambdaPaths.Copy(request.Properties, new JsonObject { ["StatementId"] = statementId }, "Action", "Principal", "SourceArn", "SourceAccount",
            "EventSourceToken", "PrincipalOrgID", "FunctionUrlAuthType", "InvokedViaFunctionUrl");
        await request.Client.LambdaAsync(HttpMethod.Post, LambdaPaths.Function(function) + "/policy" + LambdaPaths.Qualifier(qualifier), body, cancellationToken);
        return new ProvisionResult(statementId, []);
    }

    public override Task DeleteAsync(ProvisionRequest request, CancellationToken cancellationToken)
    {
        var (function, qualifier) = LambdaPaths.Split(request.String("FunctionName") ?? "");
        return IgnoreNotFoundAsync(() => request.Client.LambdaAsync(HttpMethod.Delete,
            LambdaPaths.Function(function) + "/policy/" + Uri.EscapeDataString(request.PhysicalId!) + LambdaPaths.Qualifier(qualifier), null, cancellationToken));
    }
}

/// <summary>AWS::Lambda::EventSourceMapping: Create/Update/DeleteEventSourceMapping.</summary>
internal sealed class LambdaEventSourceMappingProvider : ResourceProvider
{
    private static readonly string[] UpdatableProperties =
        ["FunctionName", "BatchSize", "Enabled", "FilterCriteria", "MaximumBatchingWindowInSeconds", "FunctionResponseTypes", "ScalingConfig", "MaximumRetryAttempts",
         "BisectBatchOnFunctionError", "MaximumRecordAgeInSeconds", "ParallelizationFactor", "DestinationConfig", "TumblingWindowInSeconds"];

    public override string Type => "AWS::Lambda::EventSourceMapping";

    public override IReadOnlySet<string> CreateOnlyProperties { get; } = Set("EventSourceArn", "StartingPosition", "StartingPositionTimestamp");

    public override IReadOnlySet<string> AttributeNames { get; } = Set("Id", "EventSourceMappingArn");

    public override async Task<ProvisionResult> CreateAsync(ProvisionRequest request, CancellationToken cancellationToken)
    {
        var body = Body(request.Properties, [.. UpdatableProperties, "EventSourceArn", "StartingPosition", "StartingPositionTimestamp"]);
        var created = await request.Client.LambdaAsync(HttpMethod.Post, "/2015-03-31/event-source-mappings/", body, cancellationToken);
        var id = created!["UUID"]!.GetValue<string>();
        return new ProvisionResult(id, Attributes(request, id, created));
    }

    public override async Task<ProvisionResult> UpdateAsync(ProvisionRequest request, CancellationToken cancellationToken)
    {
        var body = Body(request.Properties, UpdatableProperties);
        var previous = request.PreviousProperties ?? [];
        if (previous["FilterCriteria"] is not null && body["FilterCriteria"] is null)
        {
            body["FilterCriteria"] = new JsonObject { ["Filters"] = new JsonArray() };
        }
        var updated = await request.Client.LambdaAsync(HttpMethod.Put, "/2015-03-31/event-source-mappings/" + Uri.EscapeDataString(request.PhysicalId!), body, cancellationToken);
        return new ProvisionResult(request.PhysicalId!, Attributes(request, request.PhysicalId!, updated));
    }

    public override Task DeleteAsync(ProvisionRequest request, CancellationToken cancellationToken) => IgnoreNotFoundAsync(() =>
        request.Client.LambdaAsync(HttpMethod.Delete, "/2015-03-31/event-source-mappings/" + Uri.EscapeDataString(request.PhysicalId!), null, cancellationToken));

    private static JsonObject Attributes(ProvisionRequest request, string id, JsonNode? answer) => new()
    {
        ["Id"] = id,
        ["EventSourceMappingArn"] = answer?["EventSourceMappingArn"]?.GetValue<string>() ?? $"arn:aws:lambda:{request.Region}:{request.AccountId}:event-source-mapping:{id}",
    };

    private static JsonObject Body(JsonObject p, string[] names)
    {
        var body = LambdaPaths.Copy(p, [], names);
        // A template's filter patterns are JSON text; SAM lets them be objects.
        if (body["FilterCriteria"] is JsonObject criteria && criteria["Filters"] is JsonArray filters)
        {
            foreach (var filter in filters.OfType<JsonObject>())
            {
                if (filter["Pattern"] is JsonObject pattern)
                {
                    filter["Pattern"] = pattern.ToJsonString();
                }
            }
        }
        foreach (var number in new[] { "BatchSize", "MaximumBatchingWindowInSeconds", "MaximumRetryAttempts", "MaximumRecordAgeInSeconds", "ParallelizationFactor", "TumblingWindowInSeconds" })
        {
            if (body[number] is JsonValue v && v.TryGetValue<string>(out var text) && int.TryParse(text, System.Globalization.CultureInfo.InvariantCulture, out var n))
            {
                body[number] = n;
            }
        }
        if (body["Enabled"] is JsonValue e && e.TryGetValue<string>(out var enabled))
        {
            body["Enabled"] = enabled.Equals("true", StringComparison.OrdinalIgnoreCase);
        }
        return body;
    }
}

/// <summary>AWS::Lambda::Url: Create/Update/DeleteFunctionUrlConfig.</summary>
internal sealed class LambdaUrlProvider : ResourceProvider
{
    public override string Type => "AWS::Lambda::Url";

    public override IReadOnlySet<string> CreateOnlyProperties { get; } = Set("TargetFunctionArn", "Qualifier");

    public override IReadOnlySet<string> AttributeNames { get; } = Set("FunctionArn", "FunctionUrl");

    public override async Task<ProvisionResult> CreateAsync(ProvisionRequest request, CancellationToken cancellationToken)
    {
        var answer = await request.Client.LambdaAsync(HttpMethod.Post, Path(request), Body(request), cancellationToken);
        return Result(answer!);
    }

    public override async Task<ProvisionResult> UpdateAsync(ProvisionRequest request, CancellationToken cancellationToken)
    {
        var body = Body(request);
        body["Cors"] ??= new JsonObject();
        var answer = await request.Client.LambdaAsync(HttpMethod.Put, Path(request), body, cancellationToken);
        return Result(answer!);
    }

    public override Task DeleteAsync(ProvisionRequest request, CancellationToken cancellationToken) =>
        IgnoreNotFoundAsync(() => request.Client.LambdaAsync(HttpMethod.Delete, Path(request), null, cancellationToken));

    private static string Path(ProvisionRequest request)
    {
        var (function, qualifier) = LambdaPaths.Split(request.RequiredString("TargetFunctionArn"));
        return $"/2021-10-31/functions/{Uri.EscapeDataString(function)}/url" + LambdaPaths.Qualifier(request.String("Qualifier") ?? qualifier);
    }

    private static JsonObject Body(ProvisionRequest request) => LambdaPaths.Copy(request.Properties, [], "AuthType", "Cors", "InvokeMode");

    private static ProvisionResult Result(JsonNode answer)
    {
        var arn = answer["FunctionArn"]!.GetValue<string>();
        return new ProvisionResult(arn, new JsonObject { ["FunctionArn"] = arn, ["FunctionUrl"] = answer["FunctionUrl"]!.GetValue<string>() });
    }
}

/// <summary>AWS::Lambda::EventInvokeConfig: Put/DeleteFunctionEventInvokeConfig.</summary>
internal sealed class LambdaEventInvokeConfigProvider : ResourceProvider
{
    public override string Type => "AWS::Lambda::EventInvokeConfig";

    public override IReadOnlySet<string> CreateOnlyProperties { get; } = Set("FunctionName", "Qualifier");

    public override async Task<ProvisionResult> CreateAsync(ProvisionRequest request, CancellationToken cancellationToken)
    {
        await PutAsync(request, cancellationToken);
        return new ProvisionResult(request.GeneratedName(100), []);
    }

    public override async Task<ProvisionResult> UpdateAsync(ProvisionRequest request, CancellationToken cancellationToken)
    {
        await PutAsync(request, cancellationToken);
        return new ProvisionResult(request.PhysicalId!, []);
    }

    public override Task DeleteAsync(ProvisionRequest request, CancellationToken cancellationToken) =>
        IgnoreNotFoundAsync(() => request.Client.LambdaAsync(HttpMethod.Delete, Path(request), null, cancellationToken));

    private static Task<JsonNode?> PutAsync(ProvisionRequest request, CancellationToken cancellationToken)
    {
        var body = LambdaPaths.Copy(request.Properties, [], "DestinationConfig");
        foreach (var number in new[] { "MaximumRetryAttempts", "MaximumEventAgeInSeconds" })
        {
            if (request.Int(number) is { } n)
            {
                body[number] = n;
            }
        }
        return request.Client.LambdaAsync(HttpMethod.Put, Path(request), body, cancellationToken);
    }

    private static string Path(ProvisionRequest request)
    {
        var (function, qualifier) = LambdaPaths.Split(request.RequiredString("FunctionName"));
        return $"/2019-09-25/functions/{Uri.EscapeDataString(function)}/event-invoke-config" + LambdaPaths.Qualifier(request.String("Qualifier") ?? qualifier ?? "$LATEST");
    }
}
