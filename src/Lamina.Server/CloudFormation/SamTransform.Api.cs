using System.Text.Json.Nodes;

namespace Lamina.Server.CloudFormation;

/// <summary>AWS::Serverless::Api, HttpApi, SimpleTable and LayerVersion.</summary>
internal sealed partial class SamTransform
{
    private void Layer(string logicalId, JsonObject resource, JsonObject p)
    {
        var layer = new JsonObject
        {
            ["Content"] = S3Location(logicalId, "ContentUri", p["ContentUri"] ?? throw Invalid(logicalId, "Missing required property 'ContentUri'."), "S3Bucket", "S3Key", "S3ObjectVersion"),
            ["LayerName"] = ResolveParameter(p["LayerName"]) ?? JsonValue.Create(logicalId),
        };
        Copy(p, layer, "Description", "CompatibleRuntimes", "CompatibleArchitectures", "LicenseInfo");
        var retention = Text(ResolveParameter(p["RetentionPolicy"])) ?? "Retain";
        if (retention is not ("Retain" or "Delete"))
        {
            throw Invalid(logicalId, "'RetentionPolicy' must be one of the following options: ['Retain', 'Delete'].");
        }
        // A new layer version whenever the layer's definition changes, as SAM names them.
        var hashed = new JsonObject { [logicalId] = new JsonObject { ["Type"] = "AWS::Serverless::LayerVersion", ["Properties"] = p.DeepClone() } };
        if (resource["Condition"] is { } condition)
        {
            ((JsonObject)hashed[logicalId]!)["Condition"] = condition.DeepClone();
        }
        var output = Resource("AWS::Lambda::LayerVersion", layer);
        PassThrough(resource, output);
        output["DeletionPolicy"] = retention;
        var renamed = logicalId + Hash(hashed)[..10];
        _renamed[logicalId] = renamed;
        Add(renamed, output);
    }

    private void SimpleTable(string logicalId, JsonObject resource, JsonObject p)
    {
        var key = p["PrimaryKey"] as JsonObject ?? new JsonObject { ["Name"] = "id", ["Type"] = "String" };
        var keyType = Text(key["Type"]) switch
        {
            "String" or null => "S",
            "Number" => "N",
            "Binary" => "B",
            var other => throw Invalid(logicalId, $"Invalid 'Type' \"{other}\" for PrimaryKey: use String, Number or Binary."),
        };
        var name = key["Name"]?.DeepClone() ?? throw Invalid(logicalId, "'PrimaryKey' is missing required Property 'Name'.");
        var table = new JsonObject
        {
            ["AttributeDefinitions"] = new JsonArray(new JsonObject { ["AttributeName"] = name.DeepClone(), ["AttributeType"] = keyType }),
            ["KeySchema"] = new JsonArray(new JsonObject { ["AttributeName"] = name, ["KeyType"] = "HASH" }),
        };
        if (p["ProvisionedThroughput"] is { } throughput)
        {
            table["ProvisionedThroughput"] = throughput.DeepClone();
        }
        else
        {
            table["BillingMode"] = "PAY_PER_REQUEST";
        }
        Copy(p, table, "TableName", "SSESpecification", "PointInTimeRecoverySpecification");
        if (p["Tags"] is JsonObject tags)
        {
            table["Tags"] = new JsonArray(tags.Select(static t => (JsonNode?)new JsonObject { ["Key"] = t.Key, ["Value"] = t.Value?.DeepClone() }).ToArray());
        }
        var output = Resource("AWS::DynamoDB::Table", table);
        PassThrough(resource, output);
        Add(logicalId, output);
    }

    /// <summary>A REST API (AWS::Serverless::Api, or the implicit ServerlessRestApi): its Swagger body, a deployment and the stage.</summary>
    private void RestApi(string logicalId, JsonObject resource, JsonObject p, List<ApiRoute> routes)
    {
        var stageName = Text(ResolveParameter(p["StageName"])) ?? throw Invalid(logicalId, "Missing required property 'StageName'.");
        foreach (var unsupported in new[] { "Domain", "Models", "GatewayResponses" })
        {
            if (p[unsupported] is not null)
            {
                throw Invalid(logicalId, $"Lamina's transform does not support '{unsupported}' on AWS::Serverless::Api yet; describe it in DefinitionBody instead.");
            }
        }
        var openApi = Text(ResolveParameter(p["OpenApiVersion"]));
        JsonObject body;
        if (p["DefinitionBody"] is JsonObject definition)
        {
            body = (JsonObject)definition.DeepClone();
        }
        else if (p["DefinitionUri"] is not null)
        {
            throw Invalid(logicalId, "Lamina's transform does not read DefinitionUri: give the definition inline as DefinitionBody.");
        }
        else
        {
            body = openApi is not null && openApi.StartsWith('3')
                ? new JsonObject { ["openapi"] = "3.0.1" }
                : new JsonObject { ["swagger"] = "2.0" };
            body["info"] = new JsonObject { ["version"] = "1.0", ["title"] = p["Name"]?.DeepClone() ?? Ref("AWS::StackName") };
            body["paths"] = new JsonObject();
        }
        var auth = ApiAuth(logicalId, p, RestAuthKeys);
        var definitions = body["securityDefinitions"] as JsonObject ?? [];
        var paths = body["paths"] as JsonObject ?? [];
        body["paths"] = paths;
        // SAM adds the events' methods to a definition it generated (or merges them, with MergeDefinitions); a definition
        // the template gives is the API as written: events only get their permissions (and, with OverrideApiAuth, their Auth).
        var managed = p["DefinitionBody"] is null || Truthy(p["MergeDefinitions"]);
        foreach (var route in routes)
        {
            var (path, method, uri) = (route.Path, route.Method, route.Uri);
            if (!managed)
            {
                if (route.Event["Auth"] is JsonObject eventAuth && Truthy(eventAuth["OverrideApiAuth"]))
                {
                    if (eventAuth["Authorizer"] is null && eventAuth["ApiKeyRequired"] is null && eventAuth["ResourcePolicy"] is null)
                    {
                        throw InvalidEvent(route.Source, "Must define one of: Authorizer, ApiKeyRequired or ResourcePolicy when using the OverrideApiAuth property.");
                    }
                    if ((paths[path] as JsonObject)?[method == "any" ? "x-amazon-apigateway-any-method" : method] is JsonObject existing && existing["x-amazon-apigateway-integration"] is not null)
                    {
                        AddRestMethodAuth(route, existing, auth, definitions, integrationAdded: false);
                    }
                }
                continue;
            }
            var item = paths[path] as JsonObject ?? [];
            paths[path] = item;
            var key = method == "any" ? "x-amazon-apigateway-any-method" : method;
            if (item.ContainsKey(key))
            {
                continue;
            }
            var operation = new JsonObject
            {
                ["x-amazon-apigateway-integration"] = new JsonObject { ["httpMethod"] = "POST", ["type"] = "aws_proxy", ["uri"] = uri.DeepClone() },
                ["responses"] = new JsonObject(),
            };
            item[key] = operation;
            AddRestMethodAuth(route, operation, auth, definitions, integrationAdded: true);
        }
        if (p["Cors"] is { } cors)
        {
            AddCors(logicalId, paths, ResolveParameterRefs(cors)!);
        }
        if (definitions.Count > 0 && definitions.Parent is null)
        {
            body["securityDefinitions"] = definitions;
        }
        if (auth is not null)
        {
            AddRestAuth(logicalId, resource, paths, definitions, auth);
            if (definitions.Count > 0 && definitions.Parent is null)
            {
                body["securityDefinitions"] = definitions;
            }
            // SAM converts to OpenAPI 3 after the Auth and once more when it writes the API: the preflight headers'
            // schemas come out wrapped twice, and the definition (so the deployment's hash) is kept as SAM writes it.
            ToOpenApi3(body, openApi);
        }
        ToOpenApi3(body, openApi);
        var api = new JsonObject { ["Body"] = body };
        Copy(p, api, "Name", "Description", "BinaryMediaTypes", "MinimumCompressionSize", "EndpointConfiguration", "Mode", "ApiKeySourceType", "DisableExecuteApiEndpoint");
        if (api["EndpointConfiguration"] is JsonValue endpointType)
        {
            api["EndpointConfiguration"] = new JsonObject { ["Types"] = new JsonArray(endpointType.DeepClone()) };
        }
        var restApi = Resource("AWS::ApiGateway::RestApi", api);
        PassThrough(resource, restApi);
        Add(logicalId, restApi);

        // A new deployment whenever the definition changes (CloudFormation redeploys only a new Deployment resource).
        var digest = Hash(PythonJson(body) + (openApi ?? ""));
        var deploymentId = logicalId + "Deployment" + digest[..10];
        var deployment = Resource("AWS::ApiGateway::Deployment", new JsonObject
        {
            ["Description"] = "RestApi deployment id: " + digest,
            ["RestApiId"] = Ref(logicalId),
            ["StageName"] = "Stage",
        });
        PassCondition(resource, deployment);
        Add(deploymentId, deployment);
        var stage = new JsonObject { ["DeploymentId"] = Ref(deploymentId), ["RestApiId"] = Ref(logicalId), ["StageName"] = stageName };
        Copy(p, stage, "CacheClusterEnabled", "CacheClusterSize", "MethodSettings", "TracingEnabled", "AccessLogSetting", "CanarySetting");
        if (p["Variables"] is { } variables)
        {
            stage["Variables"] = variables.DeepClone();
        }
        if (p["Tags"] is JsonObject tags)
        {
            stage["Tags"] = new JsonArray(tags.Select(static t => (JsonNode?)new JsonObject { ["Key"] = t.Key, ["Value"] = t.Value?.DeepClone() }).ToArray());
        }
        var stageResource = Resource("AWS::ApiGateway::Stage", stage);
        PassCondition(resource, stageResource);
        var stageLogicalId = logicalId + stageName.Replace("-", "", StringComparison.Ordinal).Replace("_", "", StringComparison.Ordinal) + "Stage";
        Add(stageLogicalId, stageResource);
        AddUsagePlan(logicalId, resource, auth, stageLogicalId);
    }

    /// <summary>An HTTP API (AWS::Serverless::HttpApi, or the implicit ServerlessHttpApi): its OpenAPI body and stage.</summary>
    private void HttpApi(string logicalId, JsonObject resource, JsonObject p, List<ApiRoute> routes)
    {
        if (p["Domain"] is not null)
        {
            throw Invalid(logicalId, "Lamina's transform does not support 'Domain' on AWS::Serverless::HttpApi yet: Lamina serves APIs on its own host names.");
        }
        var auth = ApiAuth(logicalId, p, HttpAuthKeys);
        JsonObject body;
        if (p["DefinitionBody"] is JsonObject definition)
        {
            body = (JsonObject)definition.DeepClone();
        }
        else if (p["DefinitionUri"] is not null)
        {
            throw Invalid(logicalId, "Lamina's transform does not read DefinitionUri: give the definition inline as DefinitionBody.");
        }
        else
        {
            body = new JsonObject
            {
                ["openapi"] = "3.0.1",
                ["info"] = new JsonObject { ["version"] = "1.0", ["title"] = p["Name"]?.DeepClone() ?? Ref("AWS::StackName") },
                ["paths"] = new JsonObject(),
            };
        }
        var paths = body["paths"] as JsonObject ?? [];
        body["paths"] = paths;
        foreach (var route in routes)
        {
            var (path, method, uri, e) = (route.Path, route.Method, route.Uri, route.Event);
            var item = paths[path] as JsonObject ?? [];
            paths[path] = item;
            var key = method == "any" ? "x-amazon-apigateway-any-method" : method;
            if (item.ContainsKey(key))
            {
                continue;
            }
            var integration = new JsonObject
            {
                ["httpMethod"] = "POST", ["type"] = "aws_proxy", ["uri"] = uri.DeepClone(),
                ["payloadFormatVersion"] = e["PayloadFormatVersion"]?.DeepClone() ?? "2.0",
            };
            if (e["TimeoutInMillis"] is { } timeout)
            {
                integration["timeoutInMillis"] = timeout.DeepClone();
            }
            var operation = new JsonObject { ["x-amazon-apigateway-integration"] = integration };
            if (path == "$default" && method == "any")
            {
                operation["isDefaultRoute"] = true;
            }
            operation["responses"] = new JsonObject();
            var parameters = PathParameter().Matches(path).Select(static m => m.Value.Trim('{', '}').TrimEnd('+')).ToList();
            if (parameters.Count > 0)
            {
                operation["parameters"] = new JsonArray(parameters.Select(static name =>
                    (JsonNode?)new JsonObject { ["required"] = true, ["name"] = name, ["in"] = "path" }).ToArray());
            }
            item[key] = operation;
            AddHttpMethodAuth(route, operation, auth);
        }
        if (auth is not null)
        {
            AddHttpAuth(logicalId, resource, body, auth);
        }
        if (p["CorsConfiguration"] is JsonObject cors)
        {
            body["x-amazon-apigateway-cors"] = Lower(cors);
        }
        var tags = new JsonArray(new JsonObject { ["name"] = "httpapi:createdBy", ["x-amazon-apigateway-tag-value"] = "SAM" });
        if (p["Tags"] is JsonObject userTags)
        {
            foreach (var (key, value) in userTags)
            {
                tags.Add(new JsonObject { ["name"] = key, ["x-amazon-apigateway-tag-value"] = value?.DeepClone() });
            }
        }
        body["tags"] = tags;
        var api = new JsonObject { ["Body"] = body };
        Copy(p, api, "FailOnWarnings", "Description", "DisableExecuteApiEndpoint");
        var httpApi = Resource("AWS::ApiGatewayV2::Api", api);
        PassThrough(resource, httpApi);
        Add(logicalId, httpApi);

        var stageName = Text(ResolveParameter(p["StageName"])) ?? "$default";
        var stageTags = new JsonObject { ["httpapi:createdBy"] = "SAM" };
        if (p["Tags"] is JsonObject more)
        {
            foreach (var (key, value) in more)
            {
                stageTags[key] = value?.DeepClone();
            }
        }
        var stage = new JsonObject { ["ApiId"] = Ref(logicalId), ["StageName"] = stageName, ["Tags"] = stageTags, ["AutoDeploy"] = true };
        Copy(p, stage, "StageVariables", "DefaultRouteSettings", "RouteSettings", "AccessLogSettings");
        var stageResource = Resource("AWS::ApiGatewayV2::Stage", stage);
        PassCondition(resource, stageResource);
        Add(logicalId + (stageName == "$default" ? "ApiGatewayDefaultStage" : stageName.Replace("-", "", StringComparison.Ordinal).Replace("_", "", StringComparison.Ordinal) + "Stage"), stageResource);
    }

    /// <summary>SAM's CorsConfiguration (AllowOrigins …) as the OpenAPI extension's keys (allowOrigins …).</summary>
    private static JsonObject Lower(JsonObject cors)
    {
        var result = new JsonObject();
        foreach (var (key, value) in cors)
        {
            result[char.ToLowerInvariant(key[0]) + key[1..]] = value?.DeepClone();
        }
        return result;
    }
}
