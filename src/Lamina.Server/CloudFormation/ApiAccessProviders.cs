using System.Globalization;
using System.Text.Json.Nodes;

namespace Lamina.Server.CloudFormation;

/// <summary>
/// Who may call a REST API, as templates declare it: AWS::ApiGateway::Authorizer, ApiKey, UsagePlan and UsagePlanKey,
/// over Lamina's API Gateway API (the same calls the AWS CLI makes). Updates are patch operations, as CloudFormation's
/// own handlers send them; what CloudFormation replaces (a key's value, a plan key's plan) is create-only here.
/// </summary>
internal sealed class RestAuthorizerProvider : ResourceProvider
{
    // CloudFormation's property → the API's field, for the settings a PATCH can replace.
    private static readonly (string Property, string Field)[] Settings =
    [
        ("Name", "name"), ("Type", "type"), ("AuthorizerUri", "authorizerUri"), ("AuthorizerCredentials", "authorizerCredentials"),
        ("IdentitySource", "identitySource"), ("IdentityValidationExpression", "identityValidationExpression"),
        ("AuthorizerResultTtlInSeconds", "authorizerResultTtlInSeconds"),
    ];

    public override string Type => "AWS::ApiGateway::Authorizer";

    public override IReadOnlySet<string> CreateOnlyProperties { get; } = Set("RestApiId");

    public override IReadOnlySet<string> AttributeNames { get; } = Set("AuthorizerId");

    public override async Task<ProvisionResult> CreateAsync(ProvisionRequest request, CancellationToken cancellationToken)
    {
        if (request.String("Type") == "COGNITO_USER_POOLS" || request.Properties["ProviderARNs"] is not null)
        {
            throw new ServiceException("apigateway", 400, "InvalidRequest", "Lamina has no Cognito user pools: use a TOKEN or REQUEST (Lambda) authorizer.");
        }
        var body = new JsonObject { ["name"] = request.String("Name") ?? request.GeneratedName(128) };
        foreach (var (property, field) in Settings.Skip(1))
        {
            if (request.Properties[property] is not null)
            {
                body[field] = field == "authorizerResultTtlInSeconds" ? request.Int(property) : request.String(property);
            }
        }
        var created = await request.Client.RestJsonAsync("apigateway", HttpMethod.Post, $"/restapis/{request.RequiredString("RestApiId")}/authorizers", body, cancellationToken);
        var id = created!["id"]!.GetValue<string>();
        return new ProvisionResult(id, new JsonObject { ["AuthorizerId"] = id });
    }

    public override async Task<ProvisionResult> UpdateAsync(ProvisionRequest request, CancellationToken cancellationToken)
    {
        var previous = request.PreviousProperties ?? [];
        var operations = new JsonArray();
        foreach (var (property, field) in Settings)
        {
            if (!JsonNode.DeepEquals(request.Properties[property], previous[property]) && request.String(property) is { } value)
            {
                operations.Add(new JsonObject { ["op"] = "replace", ["path"] = "/" + field, ["value"] = value });
            }
        }
        if (operations.Count > 0)
        {
            await request.Client.RestJsonAsync("apigateway", HttpMethod.Patch, $"/restapis/{request.RequiredString("RestApiId")}/authorizers/{request.PhysicalId}",
                new JsonObject { ["patchOperations"] = operations }, cancellationToken);
        }
        return new ProvisionResult(request.PhysicalId!, new JsonObject { ["AuthorizerId"] = request.PhysicalId });
    }

    public override Task DeleteAsync(ProvisionRequest request, CancellationToken cancellationToken) => IgnoreNotFoundAsync(() =>
        request.Client.RestJsonAsync("apigateway", HttpMethod.Delete, $"/restapis/{request.String("RestApiId")}/authorizers/{request.PhysicalId}", null, cancellationToken));
}

/// <summary>AWS::ApiGateway::ApiKey: CreateApiKey (a generated value unless given), UpdateApiKey, DeleteApiKey.</summary>
internal sealed class ApiKeyProvider : ResourceProvider
{
    public override string Type => "AWS::ApiGateway::ApiKey";

    public override string? NameProperty => "Name";

    public override IReadOnlySet<string> CreateOnlyProperties { get; } = Set("Name", "Value", "GenerateDistinctId");

    public override IReadOnlySet<string> AttributeNames { get; } = Set("APIKeyId");

    public override async Task<ProvisionResult> CreateAsync(ProvisionRequest request, CancellationToken cancellationToken)
    {
        // StageKeys (the stages a key was for before usage plans; SAM's Auth.UsagePlan still writes them) are kept in
        // the template only: a key opens a stage through a usage plan, as SAM's UsagePlanKey puts it in one.
        var body = new JsonObject
        {
            ["name"] = request.String("Name") ?? request.GeneratedName(128),
            // CloudFormation's default is a disabled key.
            ["enabled"] = request.Bool("Enabled") ?? false,
        };
        foreach (var (property, field) in new[] { ("Description", "description"), ("Value", "value"), ("CustomerId", "customerId") })
        {
            if (request.String(property) is { } value)
            {
                body[field] = value;
            }
        }
        if (request.Properties["Tags"] is { } tags)
        {
            body["tags"] = CamelCase.Tags(tags);
        }
        var created = await request.Client.RestJsonAsync("apigateway", HttpMethod.Post, "/apikeys", body, cancellationToken);
        var id = created!["id"]!.GetValue<string>();
        return new ProvisionResult(id, new JsonObject { ["APIKeyId"] = id });
    }

    public override async Task<ProvisionResult> UpdateAsync(ProvisionRequest request, CancellationToken cancellationToken)
    {
        var previous = request.PreviousProperties ?? [];
        var operations = new JsonArray();
        foreach (var (property, field, fallback) in new[] { ("Description", "description", ""), ("Enabled", "enabled", "false"), ("CustomerId", "customerId", "") })
        {
            if (!JsonNode.DeepEquals(request.Properties[property], previous[property]))
            {
                var value = property == "Enabled" ? (request.Bool(property) ?? false ? "true" : "false") : request.String(property) ?? fallback;
                operations.Add(new JsonObject { ["op"] = "replace", ["path"] = "/" + field, ["value"] = value });
            }
        }
        if (operations.Count > 0)
        {
            await request.Client.RestJsonAsync("apigateway", HttpMethod.Patch, $"/apikeys/{request.PhysicalId}", new JsonObject { ["patchOperations"] = operations }, cancellationToken);
        }
        return new ProvisionResult(request.PhysicalId!, new JsonObject { ["APIKeyId"] = request.PhysicalId });
    }

    public override Task DeleteAsync(ProvisionRequest request, CancellationToken cancellationToken) => IgnoreNotFoundAsync(() =>
        request.Client.RestJsonAsync("apigateway", HttpMethod.Delete, $"/apikeys/{request.PhysicalId}", null, cancellationToken));
}

/// <summary>AWS::ApiGateway::UsagePlan: CreateUsagePlan; updates patch the name, description, stages, throttle and quota.</summary>
internal sealed class UsagePlanProvider : ResourceProvider
{
    public override string Type => "AWS::ApiGateway::UsagePlan";

    public override IReadOnlySet<string> AttributeNames { get; } = Set("Id");

    public override async Task<ProvisionResult> CreateAsync(ProvisionRequest request, CancellationToken cancellationToken)
    {
        var body = new JsonObject { ["name"] = request.String("UsagePlanName") ?? request.GeneratedName(128) };
        if (request.String("Description") is { } description)
        {
            body["description"] = description;
        }
        body["apiStages"] = new JsonArray([.. Stages(request.Properties).Select(static s => (JsonNode?)new JsonObject { ["apiId"] = s.ApiId, ["stage"] = s.Stage })]);
        if (request.Properties["Throttle"] is JsonObject throttle)
        {
            body["throttle"] = Numbers(throttle);
        }
        if (request.Properties["Quota"] is JsonObject quota)
        {
            body["quota"] = Numbers(quota);
        }
        if (request.Properties["Tags"] is { } tags)
        {
            body["tags"] = CamelCase.Tags(tags);
        }
        var created = await request.Client.RestJsonAsync("apigateway", HttpMethod.Post, "/usageplans", body, cancellationToken);
        var id = created!["id"]!.GetValue<string>();
        return new ProvisionResult(id, new JsonObject { ["Id"] = id });
    }

    public override async Task<ProvisionResult> UpdateAsync(ProvisionRequest request, CancellationToken cancellationToken)
    {
        var previous = request.PreviousProperties ?? [];
        var operations = new JsonArray();
        void Replace(string path, string value) => operations.Add(new JsonObject { ["op"] = "replace", ["path"] = path, ["value"] = value });
        if (!JsonNode.DeepEquals(request.Properties["UsagePlanName"], previous["UsagePlanName"]) && request.String("UsagePlanName") is { } name)
        {
            Replace("/name", name);
        }
        if (!JsonNode.DeepEquals(request.Properties["Description"], previous["Description"]))
        {
            Replace("/description", request.String("Description") ?? "");
        }
        var stages = Stages(request.Properties).ToHashSet();
        var before = Stages(previous).ToHashSet();
        foreach (var (apiId, stage) in before.Except(stages))
        {
            operations.Add(new JsonObject { ["op"] = "remove", ["path"] = "/apiStages", ["value"] = $"{apiId}:{stage}" });
        }
        foreach (var (apiId, stage) in stages.Except(before))
        {
            operations.Add(new JsonObject { ["op"] = "add", ["path"] = "/apiStages", ["value"] = $"{apiId}:{stage}" });
        }
        foreach (var (property, path, fields) in new[]
        {
            ("Throttle", "/throttle", new[] { ("RateLimit", "rateLimit"), ("BurstLimit", "burstLimit") }),
            ("Quota", "/quota", new[] { ("Limit", "limit"), ("Period", "period"), ("Offset", "offset") }),
        })
        {
            if (JsonNode.DeepEquals(request.Properties[property], previous[property]))
            {
                continue;
            }
            if (request.Properties[property] is not JsonObject settings)
            {
                operations.Add(new JsonObject { ["op"] = "remove", ["path"] = path });
                continue;
            }
            foreach (var (key, field) in fields)
            {
                if (settings[key] is { } value)
                {
                    Replace($"{path}/{field}", Intrinsics.Stringify(value));
                }
            }
        }
        if (operations.Count > 0)
        {
            await request.Client.RestJsonAsync("apigateway", HttpMethod.Patch, $"/usageplans/{request.PhysicalId}", new JsonObject { ["patchOperations"] = operations }, cancellationToken);
        }
        return new ProvisionResult(request.PhysicalId!, new JsonObject { ["Id"] = request.PhysicalId });
    }

    public override Task DeleteAsync(ProvisionRequest request, CancellationToken cancellationToken) => IgnoreNotFoundAsync(() =>
        request.Client.RestJsonAsync("apigateway", HttpMethod.Delete, $"/usageplans/{request.PhysicalId}", null, cancellationToken));

    private static IEnumerable<(string ApiId, string Stage)> Stages(JsonObject properties) =>
        (properties["ApiStages"] as JsonArray ?? []).OfType<JsonObject>()
            .Select(static s => (Intrinsics.Stringify(s["ApiId"]), Intrinsics.Stringify(s["Stage"])));

    /// <summary>Throttle and quota settings with API Gateway's field names, numbers as numbers.</summary>
    private static JsonObject Numbers(JsonObject settings)
    {
        var result = new JsonObject();
        foreach (var (key, value) in settings)
        {
            var text = Intrinsics.Stringify(value);
            result[CamelCase.Key(key)] = double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var number) && key != "Period"
                ? JsonValue.Create(number)
                : JsonValue.Create(text);
        }
        return result;
    }
}

/// <summary>AWS::ApiGateway::UsagePlanKey: CreateUsagePlanKey / DeleteUsagePlanKey; its physical id is the key's id.</summary>
internal sealed class UsagePlanKeyProvider : ResourceProvider
{
    public override string Type => "AWS::ApiGateway::UsagePlanKey";

    public override bool Updatable => false;

    public override IReadOnlySet<string> AttributeNames { get; } = Set("Id");

    public override async Task<ProvisionResult> CreateAsync(ProvisionRequest request, CancellationToken cancellationToken)
    {
        var key = request.RequiredString("KeyId");
        await request.Client.RestJsonAsync("apigateway", HttpMethod.Post, $"/usageplans/{request.RequiredString("UsagePlanId")}/keys",
            new JsonObject { ["keyId"] = key, ["keyType"] = request.String("KeyType") ?? "API_KEY" }, cancellationToken);
        return new ProvisionResult(key, new JsonObject { ["Id"] = $"{key}:{request.RequiredString("UsagePlanId")}" });
    }

    public override Task DeleteAsync(ProvisionRequest request, CancellationToken cancellationToken) => IgnoreNotFoundAsync(() =>
        request.Client.RestJsonAsync("apigateway", HttpMethod.Delete, $"/usageplans/{request.String("UsagePlanId")}/keys/{request.PhysicalId}", null, cancellationToken));
}
