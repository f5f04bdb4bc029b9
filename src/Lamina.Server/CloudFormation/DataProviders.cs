using System.Text;
using System.Text.Json.Nodes;

namespace Lamina.Server.CloudFormation;

/// <summary>Property names as CloudFormation writes them (PascalCase) turned into the camelCase of API Gateway's APIs.</summary>
internal static class CamelCase
{
    /// <summary>A copy with every key camel-cased, except inside the maps named in <paramref name="userMaps"/> (their keys are data).</summary>
    public static JsonNode? Of(JsonNode? node, params string[] userMaps) => node switch
    {
        JsonObject o => new JsonObject(o.Select(p => KeyValuePair.Create(Key(p.Key),
            userMaps.Contains(p.Key) ? p.Value?.DeepClone() : Of(p.Value, userMaps)))),
        JsonArray a => new JsonArray(a.Select(item => Of(item, userMaps)).ToArray()),
        _ => node?.DeepClone(),
    };

    public static string Key(string name) => name.Length == 0 ? name : char.ToLowerInvariant(name[0]) + name[1..];

    /// <summary>A CloudFormation tag list ([{Key, Value}]) or map as a plain map.</summary>
    public static JsonObject Tags(JsonNode? tags) => LambdaPaths.Tags(tags) is { } map ? (JsonObject)map.DeepClone() : [];
}

/// <summary>AWS::DynamoDB::Table over Lamina's DynamoDB API: CreateTable, UpdateTable, UpdateTimeToLive, DeleteTable.</summary>
internal sealed class DynamoDbTableProvider : ResourceProvider
{
    private const string Prefix = "DynamoDB_20120810.";
    private const string ContentType = "application/x-amz-json-1.0";

    public override string Type => "AWS::DynamoDB::Table";

    public override string? NameProperty => "TableName";

    public override IReadOnlySet<string> CreateOnlyProperties { get; } = Set("TableName", "KeySchema", "LocalSecondaryIndexes");

    public override IReadOnlySet<string> AttributeNames { get; } = Set("Arn", "StreamArn");

    public override string? PlannedPhysicalId(ProvisionRequest request) => request.String("TableName") is null ? request.GeneratedName(255) : null;

    public override async Task<ProvisionResult> CreateAsync(ProvisionRequest request, CancellationToken cancellationToken)
    {
        var p = request.Properties;
        var name = request.String("TableName") ?? request.GeneratedName(255);
        var body = LambdaPaths.Copy(p, new JsonObject { ["TableName"] = name }, "AttributeDefinitions", "KeySchema", "BillingMode", "ProvisionedThroughput",
            "GlobalSecondaryIndexes", "LocalSecondaryIndexes", "SSESpecification", "TableClass", "DeletionProtectionEnabled");
        Numbers(body);
        if (Stream(p) is { } stream)
        {
            body["StreamSpecification"] = stream;
        }
        if (p["Tags"] is JsonArray { Count: > 0 } tags)
        {
            body["Tags"] = tags.DeepClone();
        }
        await request.Client.JsonAsync("dynamodb", Prefix + "CreateTable", ContentType, body, cancellationToken);
        try
        {
            await TimeToLiveAsync(request, name, cancellationToken);
        }
        catch (ServiceException)
        {
            await DeleteTableAsync(request, name, CancellationToken.None);
            throw;
        }
        return new ProvisionResult(name, await DescribeAsync(request, name, cancellationToken));
    }

    public override async Task<ProvisionResult> UpdateAsync(ProvisionRequest request, CancellationToken cancellationToken)
    {
        var p = request.Properties;
        var previous = request.PreviousProperties ?? [];
        var name = request.PhysicalId!;
        if (!JsonNode.DeepEquals(p["GlobalSecondaryIndexes"], previous["GlobalSecondaryIndexes"]))
        {
            throw new ServiceException("dynamodb", 400, "InvalidRequest",
                "Lamina updates a table's billing, throughput, stream and time to live in place; a change of GlobalSecondaryIndexes needs a new table (give it another TableName, or none).");
        }
        var update = new JsonObject { ["TableName"] = name };
        LambdaPaths.Copy(p, update, "BillingMode", "ProvisionedThroughput", "AttributeDefinitions", "DeletionProtectionEnabled");
        Numbers(update);
        if (!JsonNode.DeepEquals(p["StreamSpecification"], previous["StreamSpecification"]))
        {
            update["StreamSpecification"] = Stream(p) ?? new JsonObject { ["StreamEnabled"] = false };
        }
        if (update.Count > 1 && (!JsonNode.DeepEquals(p["BillingMode"], previous["BillingMode"]) || !JsonNode.DeepEquals(p["ProvisionedThroughput"], previous["ProvisionedThroughput"])
            || update.ContainsKey("StreamSpecification") || !JsonNode.DeepEquals(p["DeletionProtectionEnabled"], previous["DeletionProtectionEnabled"])))
        {
            await request.Client.JsonAsync("dynamodb", Prefix + "UpdateTable", ContentType, update, cancellationToken);
        }
        if (!JsonNode.DeepEquals(p["TimeToLiveSpecification"], previous["TimeToLiveSpecification"]))
        {
            await TimeToLiveAsync(request, name, cancellationToken);
        }
        return new ProvisionResult(name, await DescribeAsync(request, name, cancellationToken));
    }

    public override Task DeleteAsync(ProvisionRequest request, CancellationToken cancellationToken) => DeleteTableAsync(request, request.PhysicalId!, cancellationToken);

    private static Task DeleteTableAsync(ProvisionRequest request, string name, CancellationToken cancellationToken) => IgnoreNotFoundAsync(() =>
        request.Client.JsonAsync("dynamodb", Prefix + "DeleteTable", ContentType, new JsonObject { ["TableName"] = name }, cancellationToken));

    private static JsonObject? Stream(JsonObject p) => p["StreamSpecification"] is JsonObject spec && spec["StreamViewType"] is { } view
        ? new JsonObject { ["StreamEnabled"] = true, ["StreamViewType"] = view.DeepClone() }
        : null;

    private static async Task TimeToLiveAsync(ProvisionRequest request, string name, CancellationToken cancellationToken)
    {
        if (request.Properties["TimeToLiveSpecification"] is JsonObject ttl && ttl["AttributeName"] is { } attribute)
        {
            var enabled = Intrinsics.Stringify(ttl["Enabled"]).Equals("true", StringComparison.OrdinalIgnoreCase);
            await request.Client.JsonAsync("dynamodb", Prefix + "UpdateTimeToLive", ContentType, new JsonObject
            {
                ["TableName"] = name,
                ["TimeToLiveSpecification"] = new JsonObject { ["AttributeName"] = attribute.DeepClone(), ["Enabled"] = enabled },
            }, cancellationToken);
        }
        else if (request.PreviousProperties?["TimeToLiveSpecification"] is JsonObject old && old["AttributeName"] is { } oldAttribute
            && Intrinsics.Stringify(old["Enabled"]).Equals("true", StringComparison.OrdinalIgnoreCase))
        {
            await request.Client.JsonAsync("dynamodb", Prefix + "UpdateTimeToLive", ContentType, new JsonObject
            {
                ["TableName"] = name,
                ["TimeToLiveSpecification"] = new JsonObject { ["AttributeName"] = oldAttribute.DeepClone(), ["Enabled"] = false },
            }, cancellationToken);
        }
    }

    private static async Task<JsonObject> DescribeAsync(ProvisionRequest request, string name, CancellationToken cancellationToken)
    {
        var table = (await request.Client.JsonAsync("dynamodb", Prefix + "DescribeTable", ContentType, new JsonObject { ["TableName"] = name }, cancellationToken))["Table"];
        var attributes = new JsonObject { ["Arn"] = table?["TableArn"]?.GetValue<string>() ?? $"arn:aws:dynamodb:{request.Region}:{request.AccountId}:table/{name}" };
        if (table?["LatestStreamArn"]?.GetValue<string>() is { } stream)
        {
            attributes["StreamArn"] = stream;
        }
        return attributes;
    }

    /// <summary>Capacity units written as strings in a template are numbers to DynamoDB.</summary>
    private static void Numbers(JsonNode? node)
    {
        switch (node)
        {
            case JsonObject o:
                foreach (var key in o.Select(static p => p.Key).ToList())
                {
                    if (key is "ReadCapacityUnits" or "WriteCapacityUnits" && o[key] is JsonValue v && v.TryGetValue<string>(out var text)
                        && long.TryParse(text, System.Globalization.CultureInfo.InvariantCulture, out var n))
                    {
                        o[key] = n;
                    }
                    else
                    {
                        Numbers(o[key]);
                    }
                }
                break;
            case JsonArray a:
                foreach (var item in a)
                {
                    Numbers(item);
                }
                break;
        }
    }
}

/// <summary>AWS::ApiGateway::RestApi: an import of its Body (Swagger 2 / OpenAPI 3), or an empty API; PutRestApi on update.</summary>
internal sealed class RestApiProvider : ResourceProvider
{
    public override string Type => "AWS::ApiGateway::RestApi";

    public override IReadOnlySet<string> AttributeNames { get; } = Set("RestApiId", "RootResourceId");

    public override async Task<ProvisionResult> CreateAsync(ProvisionRequest request, CancellationToken cancellationToken)
    {
        var p = request.Properties;
        JsonNode? created;
        if (await BodyAsync(request, cancellationToken) is { } body)
        {
            created = await request.Client.RestJsonAsync("apigateway", HttpMethod.Post, "/restapis?mode=import" + Query(p), body, cancellationToken);
            var id = created!["id"]!.GetValue<string>();
            try
            {
                await PatchAsync(request, id, null, cancellationToken);
            }
            catch (ServiceException)
            {
                await IgnoreNotFoundAsync(() => request.Client.RestJsonAsync("apigateway", HttpMethod.Delete, "/restapis/" + id, null, CancellationToken.None));
                throw;
            }
        }
        else
        {
            var api = (JsonObject)CamelCase.Of(LambdaPaths.Copy(p, [], "Name", "Description", "BinaryMediaTypes", "MinimumCompressionSize", "EndpointConfiguration",
                "ApiKeySourceType", "DisableExecuteApiEndpoint", "Policy"))!;
            if (api["apiKeySourceType"] is { } source)
            {
                api.Remove("apiKeySourceType");
                api["apiKeySource"] = source;
            }
            if (api["policy"] is JsonObject policy)
            {
                api["policy"] = policy.ToJsonString();
            }
            api["name"] ??= request.LogicalId;
            created = await request.Client.RestJsonAsync("apigateway", HttpMethod.Post, "/restapis", api, cancellationToken);
        }
        var apiId = created!["id"]!.GetValue<string>();
        return new ProvisionResult(apiId, new JsonObject { ["RestApiId"] = apiId, ["RootResourceId"] = created["rootResourceId"]?.GetValue<string>() });
    }

    public override async Task<ProvisionResult> UpdateAsync(ProvisionRequest request, CancellationToken cancellationToken)
    {
        var id = request.PhysicalId!;
        var previous = request.PreviousProperties ?? [];
        if (!JsonNode.DeepEquals(request.Properties["Body"], previous["Body"]) || !JsonNode.DeepEquals(request.Properties["BodyS3Location"], previous["BodyS3Location"]))
        {
            if (await BodyAsync(request, cancellationToken) is { } body)
            {
                await request.Client.RestJsonAsync("apigateway", HttpMethod.Put, $"/restapis/{id}?mode=overwrite" + Query(request.Properties).Replace('?', '&'), body, cancellationToken);
            }
        }
        await PatchAsync(request, id, previous, cancellationToken);
        var api = await request.Client.RestJsonAsync("apigateway", HttpMethod.Get, "/restapis/" + id, null, cancellationToken);
        return new ProvisionResult(id, new JsonObject { ["RestApiId"] = id, ["RootResourceId"] = api?["rootResourceId"]?.GetValue<string>() });
    }

    public override Task DeleteAsync(ProvisionRequest request, CancellationToken cancellationToken) =>
        IgnoreNotFoundAsync(() => request.Client.RestJsonAsync("apigateway", HttpMethod.Delete, "/restapis/" + request.PhysicalId, null, cancellationToken));

    private static string Query(JsonObject p)
    {
        var parameters = new List<string>();
        if (p["FailOnWarnings"] is { } fail)
        {
            parameters.Add("failonwarnings=" + Intrinsics.Stringify(fail).ToLowerInvariant());
        }
        if (p["Parameters"] is JsonObject given)
        {
            parameters.AddRange(given.Select(static g => Uri.EscapeDataString(g.Key) + "=" + Uri.EscapeDataString(Intrinsics.Stringify(g.Value))));
        }
        return parameters.Count == 0 ? "" : "?" + string.Join('&', parameters);
    }

    /// <summary>The definition to import: Body, or the object BodyS3Location names in Lamina's S3.</summary>
    internal static async Task<JsonNode?> BodyAsync(ProvisionRequest request, CancellationToken cancellationToken)
    {
        if (request.Properties["Body"] is { } body)
        {
            return body is JsonValue text && text.TryGetValue<string>(out var json) ? JsonNode.Parse(json) : body.DeepClone();
        }
        if (request.Properties["BodyS3Location"] is JsonObject location)
        {
            var bytes = await request.Client.S3Async(HttpMethod.Get,
                $"/{Intrinsics.Stringify(location["Bucket"])}/{Intrinsics.Stringify(location["Key"])}" + (location["Version"] is { } v ? "?versionId=" + Uri.EscapeDataString(Intrinsics.Stringify(v)) : ""),
                null, cancellationToken);
            var text = Encoding.UTF8.GetString(bytes);
            return text.TrimStart().StartsWith('{') ? JsonNode.Parse(text) : TemplateReader.Read(text);
        }
        return null;
    }

    /// <summary>Name and description set on an imported API (the template's word wins over the definition's title).</summary>
    private static async Task PatchAsync(ProvisionRequest request, string id, JsonObject? previous, CancellationToken cancellationToken)
    {
        var operations = new JsonArray();
        foreach (var (property, path) in new[] { ("Name", "/name"), ("Description", "/description") })
        {
            if (request.String(property) is { } value && (previous is null || !JsonNode.DeepEquals(previous[property], request.Properties[property]) || request.Properties["Body"] is not null))
            {
                operations.Add(new JsonObject { ["op"] = "replace", ["path"] = path, ["value"] = value });
            }
        }
        if (operations.Count > 0)
        {
            await request.Client.RestJsonAsync("apigateway", HttpMethod.Patch, "/restapis/" + id, new JsonObject { ["patchOperations"] = operations }, cancellationToken);
        }
    }
}

/// <summary>AWS::ApiGateway::Deployment: CreateDeployment (moving its StageName's stage); deleted with the stage that still serves it.</summary>
internal sealed class RestDeploymentProvider : ResourceProvider
{
    public override string Type => "AWS::ApiGateway::Deployment";

    public override bool Updatable => false;

    public override IReadOnlySet<string> AttributeNames { get; } = Set("DeploymentId");

    public override async Task<ProvisionResult> CreateAsync(ProvisionRequest request, CancellationToken cancellationToken)
    {
        var api = request.RequiredString("RestApiId");
        var body = new JsonObject();
        if (request.String("StageName") is { } stage)
        {
            body["stageName"] = stage;
        }
        if (request.String("Description") is { } description)
        {
            body["description"] = description;
        }
        if (request.Properties["StageDescription"] is JsonObject stageDescription && stageDescription["Variables"] is JsonObject variables)
        {
            body["variables"] = variables.DeepClone();
        }
        var created = await request.Client.RestJsonAsync("apigateway", HttpMethod.Post, $"/restapis/{api}/deployments", body, cancellationToken);
        var id = created!["id"]!.GetValue<string>();
        return new ProvisionResult(id, new JsonObject { ["DeploymentId"] = id });
    }

    public override async Task DeleteAsync(ProvisionRequest request, CancellationToken cancellationToken)
    {
        var api = request.RequiredString("RestApiId");
        // The stage this deployment made goes with it — unless a newer deployment has moved it since.
        if (request.String("StageName") is { } stage)
        {
            try
            {
                var current = await request.Client.RestJsonAsync("apigateway", HttpMethod.Get, $"/restapis/{api}/stages/{Uri.EscapeDataString(stage)}", null, cancellationToken);
                if (current?["deploymentId"]?.GetValue<string>() == request.PhysicalId)
                {
                    await request.Client.RestJsonAsync("apigateway", HttpMethod.Delete, $"/restapis/{api}/stages/{Uri.EscapeDataString(stage)}", null, cancellationToken);
                }
            }
            catch (ServiceException e) when (e.NotFound)
            {
            }
        }
        await IgnoreNotFoundAsync(() => request.Client.RestJsonAsync("apigateway", HttpMethod.Delete, $"/restapis/{api}/deployments/{request.PhysicalId}", null, cancellationToken));
    }
}

/// <summary>AWS::ApiGateway::Stage: CreateStage, UpdateStage (patches), DeleteStage.</summary>
internal sealed class RestStageProvider : ResourceProvider
{
    public override string Type => "AWS::ApiGateway::Stage";

    public override IReadOnlySet<string> CreateOnlyProperties { get; } = Set("RestApiId", "StageName");

    public override async Task<ProvisionResult> CreateAsync(ProvisionRequest request, CancellationToken cancellationToken)
    {
        var api = request.RequiredString("RestApiId");
        var name = request.String("StageName") ?? request.GeneratedName(128);
        var body = new JsonObject { ["stageName"] = name, ["deploymentId"] = request.RequiredString("DeploymentId") };
        if (request.String("Description") is { } description)
        {
            body["description"] = description;
        }
        if (request.Properties["Variables"] is JsonObject variables)
        {
            body["variables"] = variables.DeepClone();
        }
        if (request.Bool("TracingEnabled") is { } tracing)
        {
            body["tracingEnabled"] = tracing;
        }
        if (request.Properties["Tags"] is { } tags)
        {
            body["tags"] = CamelCase.Tags(tags);
        }
        await request.Client.RestJsonAsync("apigateway", HttpMethod.Post, $"/restapis/{api}/stages", body, cancellationToken);
        return new ProvisionResult(name, []);
    }

    public override async Task<ProvisionResult> UpdateAsync(ProvisionRequest request, CancellationToken cancellationToken)
    {
        var api = request.RequiredString("RestApiId");
        var previous = request.PreviousProperties ?? [];
        var operations = new JsonArray();
        if (request.String("DeploymentId") is { } deployment && deployment != Intrinsics.Stringify(previous["DeploymentId"]))
        {
            operations.Add(new JsonObject { ["op"] = "replace", ["path"] = "/deploymentId", ["value"] = deployment });
        }
        if (!JsonNode.DeepEquals(request.Properties["Description"], previous["Description"]))
        {
            operations.Add(new JsonObject { ["op"] = "replace", ["path"] = "/description", ["value"] = request.String("Description") ?? "" });
        }
        var variables = request.Properties["Variables"] as JsonObject ?? [];
        var oldVariables = previous["Variables"] as JsonObject ?? [];
        foreach (var (name, value) in variables)
        {
            if (!JsonNode.DeepEquals(value, oldVariables[name]))
            {
                operations.Add(new JsonObject { ["op"] = "replace", ["path"] = "/variables/" + name, ["value"] = Intrinsics.Stringify(value) });
            }
        }
        foreach (var (name, _) in oldVariables.Where(v => !variables.ContainsKey(v.Key)))
        {
            operations.Add(new JsonObject { ["op"] = "remove", ["path"] = "/variables/" + name });
        }
        if (!JsonNode.DeepEquals(request.Properties["TracingEnabled"], previous["TracingEnabled"]))
        {
            operations.Add(new JsonObject { ["op"] = "replace", ["path"] = "/tracingEnabled", ["value"] = (request.Bool("TracingEnabled") ?? false) ? "true" : "false" });
        }
        if (operations.Count > 0)
        {
            await request.Client.RestJsonAsync("apigateway", HttpMethod.Patch, $"/restapis/{api}/stages/{Uri.EscapeDataString(request.PhysicalId!)}",
                new JsonObject { ["patchOperations"] = operations }, cancellationToken);
        }
        return new ProvisionResult(request.PhysicalId!, []);
    }

    public override Task DeleteAsync(ProvisionRequest request, CancellationToken cancellationToken) => IgnoreNotFoundAsync(() =>
        request.Client.RestJsonAsync("apigateway", HttpMethod.Delete, $"/restapis/{request.String("RestApiId")}/stages/{Uri.EscapeDataString(request.PhysicalId!)}", null, cancellationToken));
}

/// <summary>AWS::ApiGateway::Resource: a path part under a parent resource.</summary>
internal sealed class RestResourceProvider : ResourceProvider
{
    public override string Type => "AWS::ApiGateway::Resource";

    public override IReadOnlySet<string> CreateOnlyProperties { get; } = Set("RestApiId", "ParentId");

    public override IReadOnlySet<string> AttributeNames { get; } = Set("ResourceId");

    public override async Task<ProvisionResult> CreateAsync(ProvisionRequest request, CancellationToken cancellationToken)
    {
        var created = await request.Client.RestJsonAsync("apigateway", HttpMethod.Post,
            $"/restapis/{request.RequiredString("RestApiId")}/resources/{request.RequiredString("ParentId")}", new JsonObject { ["pathPart"] = request.RequiredString("PathPart") }, cancellationToken);
        var id = created!["id"]!.GetValue<string>();
        return new ProvisionResult(id, new JsonObject { ["ResourceId"] = id });
    }

    public override async Task<ProvisionResult> UpdateAsync(ProvisionRequest request, CancellationToken cancellationToken)
    {
        await request.Client.RestJsonAsync("apigateway", HttpMethod.Patch, $"/restapis/{request.RequiredString("RestApiId")}/resources/{request.PhysicalId}",
            new JsonObject { ["patchOperations"] = new JsonArray(new JsonObject { ["op"] = "replace", ["path"] = "/pathPart", ["value"] = request.RequiredString("PathPart") }) }, cancellationToken);
        return new ProvisionResult(request.PhysicalId!, new JsonObject { ["ResourceId"] = request.PhysicalId });
    }

    public override Task DeleteAsync(ProvisionRequest request, CancellationToken cancellationToken) => IgnoreNotFoundAsync(() =>
        request.Client.RestJsonAsync("apigateway", HttpMethod.Delete, $"/restapis/{request.String("RestApiId")}/resources/{request.PhysicalId}", null, cancellationToken));
}

/// <summary>AWS::ApiGateway::Method: PutMethod and its Integration; replaced as a whole on change.</summary>
internal sealed class RestMethodProvider : ResourceProvider
{
    public override string Type => "AWS::ApiGateway::Method";

    public override bool Updatable => false;

    public override async Task<ProvisionResult> CreateAsync(ProvisionRequest request, CancellationToken cancellationToken)
    {
        var p = request.Properties;
        var path = Path(request);
        var method = (JsonObject)CamelCase.Of(LambdaPaths.Copy(p, [], "AuthorizationType", "AuthorizerId", "ApiKeyRequired", "OperationName", "RequestParameters",
            "RequestModels", "AuthorizationScopes"), "RequestParameters", "RequestModels")!;
        method["authorizationType"] ??= "NONE";
        await request.Client.RestJsonAsync("apigateway", HttpMethod.Put, path, method, cancellationToken);
        try
        {
            if (p["Integration"] is JsonObject integration)
            {
                var body = (JsonObject)CamelCase.Of(integration, "RequestParameters", "RequestTemplates", "ResponseParameters", "ResponseTemplates")!;
                body.Remove("integrationResponses");
                // CloudFormation names the integration's method IntegrationHttpMethod; PutIntegration takes httpMethod.
                if (body["integrationHttpMethod"] is { } integrationMethod)
                {
                    body.Remove("integrationHttpMethod");
                    body["httpMethod"] = integrationMethod;
                }
                await request.Client.RestJsonAsync("apigateway", HttpMethod.Put, path + "/integration", body, cancellationToken);
            }
        }
        catch (ServiceException)
        {
            await IgnoreNotFoundAsync(() => request.Client.RestJsonAsync("apigateway", HttpMethod.Delete, path, null, CancellationToken.None));
            throw;
        }
        return new ProvisionResult($"{request.RequiredString("RestApiId")}|{request.RequiredString("ResourceId")}|{request.RequiredString("HttpMethod")}", []);
    }

    public override Task DeleteAsync(ProvisionRequest request, CancellationToken cancellationToken) =>
        IgnoreNotFoundAsync(() => request.Client.RestJsonAsync("apigateway", HttpMethod.Delete, Path(request), null, cancellationToken));

    private static string Path(ProvisionRequest request) =>
        $"/restapis/{request.RequiredString("RestApiId")}/resources/{request.RequiredString("ResourceId")}/methods/{request.RequiredString("HttpMethod").ToUpperInvariant()}";
}

/// <summary>AWS::ApiGatewayV2::Api: ImportApi of its Body (OpenAPI 3), or CreateApi (quick create with Target); ReimportApi / UpdateApi.</summary>
internal sealed class HttpApiProvider : ResourceProvider
{
    private static readonly string[] Settable = ["Name", "Description", "ProtocolType", "RouteSelectionExpression", "ApiKeySelectionExpression", "CorsConfiguration",
        "DisableExecuteApiEndpoint", "Version", "Target", "RouteKey", "CredentialsArn"];

    public override string Type => "AWS::ApiGatewayV2::Api";

    public override IReadOnlySet<string> AttributeNames { get; } = Set("ApiId", "ApiEndpoint");

    public override async Task<ProvisionResult> CreateAsync(ProvisionRequest request, CancellationToken cancellationToken)
    {
        JsonNode? created;
        if (await RestApiProvider.BodyAsync(request, cancellationToken) is { } body)
        {
            created = await request.Client.RestJsonAsync("apigateway", HttpMethod.Put, "/v2/apis" + Query(request.Properties), new JsonObject { ["body"] = body.ToJsonString() }, cancellationToken);
            var id = created!["apiId"]!.GetValue<string>();
            if (request.String("Name") is { } name || request.String("Description") is not null)
            {
                try
                {
                    created = await request.Client.RestJsonAsync("apigateway", HttpMethod.Patch, "/v2/apis/" + id,
                        (JsonObject)CamelCase.Of(LambdaPaths.Copy(request.Properties, [], "Name", "Description"))!, cancellationToken);
                }
                catch (ServiceException)
                {
                    await IgnoreNotFoundAsync(() => request.Client.RestJsonAsync("apigateway", HttpMethod.Delete, "/v2/apis/" + id, null, CancellationToken.None));
                    throw;
                }
            }
        }
        else
        {
            var api = (JsonObject)CamelCase.Of(LambdaPaths.Copy(request.Properties, [], Settable))!;
            api["name"] ??= request.GeneratedName(128);
            api["protocolType"] ??= "HTTP";
            if (request.Properties["Tags"] is { } tags)
            {
                api["tags"] = CamelCase.Tags(tags);
            }
            created = await request.Client.RestJsonAsync("apigateway", HttpMethod.Post, "/v2/apis", api, cancellationToken);
        }
        return Result(created!);
    }

    public override async Task<ProvisionResult> UpdateAsync(ProvisionRequest request, CancellationToken cancellationToken)
    {
        var id = request.PhysicalId!;
        JsonNode? answer;
        if (await RestApiProvider.BodyAsync(request, cancellationToken) is { } body)
        {
            answer = await request.Client.RestJsonAsync("apigateway", HttpMethod.Put, "/v2/apis/" + id + Query(request.Properties), new JsonObject { ["body"] = body.ToJsonString() }, cancellationToken);
        }
        else
        {
            var api = (JsonObject)CamelCase.Of(LambdaPaths.Copy(request.Properties, [], "Name", "Description", "RouteSelectionExpression", "CorsConfiguration", "DisableExecuteApiEndpoint",
                "Version"))!;
            answer = await request.Client.RestJsonAsync("apigateway", HttpMethod.Patch, "/v2/apis/" + id, api, cancellationToken);
        }
        return Result(answer!);
    }

    public override Task DeleteAsync(ProvisionRequest request, CancellationToken cancellationToken) =>
        IgnoreNotFoundAsync(() => request.Client.RestJsonAsync("apigateway", HttpMethod.Delete, "/v2/apis/" + request.PhysicalId, null, cancellationToken));

    private static string Query(JsonObject p) => p["FailOnWarnings"] is { } fail ? "?failOnWarnings=" + Intrinsics.Stringify(fail).ToLowerInvariant() : "";

    private static ProvisionResult Result(JsonNode api)
    {
        var id = api["apiId"]!.GetValue<string>();
        return new ProvisionResult(id, new JsonObject { ["ApiId"] = id, ["ApiEndpoint"] = api["apiEndpoint"]?.GetValue<string>() });
    }
}

/// <summary>AWS::ApiGatewayV2::Stage: CreateStage, UpdateStage, DeleteStage.</summary>
internal sealed class HttpStageProvider : ResourceProvider
{
    private static readonly string[] Settable = ["AutoDeploy", "DeploymentId", "Description", "StageVariables", "DefaultRouteSettings", "RouteSettings", "AccessLogSettings"];

    public override string Type => "AWS::ApiGatewayV2::Stage";

    public override IReadOnlySet<string> CreateOnlyProperties { get; } = Set("ApiId", "StageName");

    public override async Task<ProvisionResult> CreateAsync(ProvisionRequest request, CancellationToken cancellationToken)
    {
        var body = Body(request);
        var name = request.RequiredString("StageName");
        body["stageName"] = name;
        if (request.Properties["Tags"] is { } tags)
        {
            body["tags"] = CamelCase.Tags(tags);
        }
        await request.Client.RestJsonAsync("apigateway", HttpMethod.Post, $"/v2/apis/{request.RequiredString("ApiId")}/stages", body, cancellationToken);
        return new ProvisionResult(name, []);
    }

    public override async Task<ProvisionResult> UpdateAsync(ProvisionRequest request, CancellationToken cancellationToken)
    {
        await request.Client.RestJsonAsync("apigateway", HttpMethod.Patch, $"/v2/apis/{request.RequiredString("ApiId")}/stages/{Uri.EscapeDataString(request.PhysicalId!)}",
            Body(request), cancellationToken);
        return new ProvisionResult(request.PhysicalId!, []);
    }

    public override Task DeleteAsync(ProvisionRequest request, CancellationToken cancellationToken) => IgnoreNotFoundAsync(() =>
        request.Client.RestJsonAsync("apigateway", HttpMethod.Delete, $"/v2/apis/{request.String("ApiId")}/stages/{Uri.EscapeDataString(request.PhysicalId!)}", null, cancellationToken));

    private static JsonObject Body(ProvisionRequest request) => (JsonObject)CamelCase.Of(LambdaPaths.Copy(request.Properties, [], Settable), "StageVariables", "RouteSettings")!;
}

/// <summary>AWS::ApiGatewayV2::Integration, Route and Deployment: the parts of an HTTP API written out in a template.</summary>
internal sealed class HttpApiPartProvider(string type, string collection, string idField, string attribute, string[] settable, string[] createOnly) : ResourceProvider
{
    public override string Type => type;

    public override IReadOnlySet<string> CreateOnlyProperties { get; } = Set(createOnly);

    public override IReadOnlySet<string> AttributeNames { get; } = Set(attribute);

    public override async Task<ProvisionResult> CreateAsync(ProvisionRequest request, CancellationToken cancellationToken)
    {
        var created = await request.Client.RestJsonAsync("apigateway", HttpMethod.Post, $"/v2/apis/{request.RequiredString("ApiId")}/{collection}", Body(request), cancellationToken);
        var id = created![idField]!.GetValue<string>();
        return new ProvisionResult(id, new JsonObject { [attribute] = id });
    }

    public override async Task<ProvisionResult> UpdateAsync(ProvisionRequest request, CancellationToken cancellationToken)
    {
        await request.Client.RestJsonAsync("apigateway", HttpMethod.Patch, $"/v2/apis/{request.RequiredString("ApiId")}/{collection}/{request.PhysicalId}", Body(request), cancellationToken);
        return new ProvisionResult(request.PhysicalId!, new JsonObject { [attribute] = request.PhysicalId });
    }

    public override Task DeleteAsync(ProvisionRequest request, CancellationToken cancellationToken) => IgnoreNotFoundAsync(() =>
        request.Client.RestJsonAsync("apigateway", HttpMethod.Delete, $"/v2/apis/{request.String("ApiId")}/{collection}/{request.PhysicalId}", null, cancellationToken));

    private JsonObject Body(ProvisionRequest request)
    {
        var body = (JsonObject)CamelCase.Of(LambdaPaths.Copy(request.Properties, [], settable), "RequestParameters", "ResponseParameters")!;
        foreach (var number in new[] { "timeoutInMillis", "authorizerResultTtlInSeconds" })
        {
            if (body[number] is JsonValue v && v.TryGetValue<string>(out var text) && int.TryParse(text, System.Globalization.CultureInfo.InvariantCulture, out var n))
            {
                body[number] = n;
            }
        }
        return body;
    }
}
