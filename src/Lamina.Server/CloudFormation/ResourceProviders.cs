using System.Security.Cryptography;
using System.Text.Json.Nodes;

namespace Lamina.Server.CloudFormation;

/// <summary>Every resource type Lamina deploys, and the providers that have no service behind them.</summary>
internal static class ResourceProviders
{
    public static IEnumerable<ResourceProvider> All() =>
    [
        new LambdaFunctionProvider(), new LambdaVersionProvider(), new LambdaAliasProvider(), new LambdaLayerVersionProvider(),
        new LambdaPermissionProvider(), new LambdaEventSourceMappingProvider(), new LambdaUrlProvider(), new LambdaEventInvokeConfigProvider(),
        new SqsQueueProvider(), new SqsQueuePolicyProvider(), new SnsTopicProvider(), new SnsSubscriptionProvider(), new EventsRuleProvider(),
        new S3BucketProvider(), new LogGroupProvider(), new LogSubscriptionFilterProvider(), new DynamoDbTableProvider(), new SchedulerScheduleProvider(),
        new RestApiProvider(), new RestDeploymentProvider(), new RestStageProvider(), new RestResourceProvider(), new RestMethodProvider(),
        new HttpApiProvider(), new HttpStageProvider(),
        new RestAuthorizerProvider(), new ApiKeyProvider(), new UsagePlanProvider(), new UsagePlanKeyProvider(),
        new HttpApiPartProvider("AWS::ApiGatewayV2::Authorizer", "authorizers", "authorizerId", "AuthorizerId",
            ["AuthorizerType", "AuthorizerUri", "IdentitySource", "JwtConfiguration", "Name", "AuthorizerPayloadFormatVersion", "AuthorizerResultTtlInSeconds",
             "EnableSimpleResponses", "AuthorizerCredentialsArn", "IdentityValidationExpression"], ["ApiId"]),
        new HttpApiPartProvider("AWS::ApiGatewayV2::Integration", "integrations", "integrationId", "IntegrationId",
            ["IntegrationType", "IntegrationUri", "IntegrationMethod", "PayloadFormatVersion", "TimeoutInMillis", "CredentialsArn", "Description", "RequestParameters",
             "ResponseParameters", "ConnectionType", "IntegrationSubtype"], ["ApiId"]),
        new HttpApiPartProvider("AWS::ApiGatewayV2::Route", "routes", "routeId", "RouteId",
            ["RouteKey", "Target", "AuthorizationType", "AuthorizerId", "AuthorizationScopes", "ApiKeyRequired", "OperationName", "RequestParameters"], ["ApiId"]),
        new HttpApiPartProvider("AWS::ApiGatewayV2::Deployment", "deployments", "deploymentId", "DeploymentId", ["Description", "StageName"], ["ApiId"]),
        new RecordedProvider("AWS::IAM::Role", "RoleName", 64, ["Arn", "RoleId"],
            static (request, name) => new JsonObject
            {
                ["Arn"] = $"arn:aws:iam::{request.AccountId}:role{Path(request)}{name}",
                ["RoleId"] = "AROA" + RandomNumberGenerator.GetString("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 17),
            }, createOnly: ["RoleName", "Path"]),
        new RecordedProvider("AWS::IAM::Policy", null, 128, [], static (_, _) => []),
        new RecordedProvider("AWS::IAM::ManagedPolicy", "ManagedPolicyName", 128, ["PolicyArn"],
            static (request, name) => new JsonObject { ["PolicyArn"] = $"arn:aws:iam::{request.AccountId}:policy{Path(request)}{name}" },
            refIsAttribute: "PolicyArn", createOnly: ["ManagedPolicyName", "Path"]),
        new RecordedProvider("AWS::CodeDeploy::Application", "ApplicationName", 100, [], static (_, _) => [], createOnly: ["ApplicationName"]),
        new RecordedProvider("AWS::CodeDeploy::DeploymentConfig", "DeploymentConfigName", 100, [], static (_, _) => [], createOnly: ["DeploymentConfigName", "TrafficRoutingConfig"]),
        new RecordedProvider("AWS::CodeDeploy::DeploymentGroup", "DeploymentGroupName", 100, [], static (_, _) => [], createOnly: ["DeploymentGroupName", "ApplicationName"]),
        new RecordedProvider("AWS::CloudFormation::WaitConditionHandle", null, 128, [], static (_, _) => []),
    ];

    private static string Path(ProvisionRequest request) => request.String("Path") is { Length: > 0 } path ? path : "/";
}

/// <summary>
/// A resource type with nothing to do on Lamina (IAM roles and policies: functions get their credentials from the
/// environment, not from a role): recorded with the name and ARN it would have, so templates that refer to them deploy.
/// </summary>
internal sealed class RecordedProvider(string type, string? nameProperty, int maxName, string[] attributes, Func<ProvisionRequest, string, JsonObject> attributesOf,
    string? refIsAttribute = null, string[]? createOnly = null) : ResourceProvider
{
    public override string Type => type;

    public override string? NameProperty => nameProperty;

    public override IReadOnlySet<string> AttributeNames { get; } = Set(attributes);

    public override IReadOnlySet<string> CreateOnlyProperties { get; } = Set(createOnly ?? []);

    public override Task<ProvisionResult> CreateAsync(ProvisionRequest request, CancellationToken cancellationToken)
    {
        var name = (nameProperty is null ? null : request.String(nameProperty)) ?? request.GeneratedName(maxName);
        var values = attributesOf(request, name);
        var physical = refIsAttribute is null ? name : values[refIsAttribute]!.GetValue<string>();
        return Task.FromResult(new ProvisionResult(physical, values));
    }

    public override Task<ProvisionResult> UpdateAsync(ProvisionRequest request, CancellationToken cancellationToken) =>
        Task.FromResult(new ProvisionResult(request.PhysicalId!, request.PreviousAttributes ?? []));

    public override Task DeleteAsync(ProvisionRequest request, CancellationToken cancellationToken) => Task.CompletedTask;
}

/// <summary>AWS::Logs::LogGroup over the CloudWatch Logs API.</summary>
internal sealed class LogGroupProvider : ResourceProvider
{
    private const string Target = "Logs_20140328.";
    private const string ContentType = "application/x-amz-json-1.1";

    public override string Type => "AWS::Logs::LogGroup";

    public override string? NameProperty => "LogGroupName";

    public override IReadOnlySet<string> CreateOnlyProperties { get; } = Set("LogGroupName");

    public override IReadOnlySet<string> AttributeNames { get; } = Set("Arn");

    public override string? PlannedPhysicalId(ProvisionRequest request) => request.String("LogGroupName") is null ? request.GeneratedName(512) : null;

    public override async Task<ProvisionResult> CreateAsync(ProvisionRequest request, CancellationToken cancellationToken)
    {
        var name = request.String("LogGroupName") ?? request.GeneratedName(512);
        await request.Client.JsonAsync("logs", Target + "CreateLogGroup", ContentType, new JsonObject { ["logGroupName"] = name }, cancellationToken);
        await RetentionAsync(request, name, cancellationToken);
        return new ProvisionResult(name, new JsonObject { ["Arn"] = $"arn:aws:logs:{request.Region}:{request.AccountId}:log-group:{name}:*" });
    }

    public override async Task<ProvisionResult> UpdateAsync(ProvisionRequest request, CancellationToken cancellationToken)
    {
        await RetentionAsync(request, request.PhysicalId!, cancellationToken);
        return new ProvisionResult(request.PhysicalId!, request.PreviousAttributes ?? []);
    }

    private static async Task RetentionAsync(ProvisionRequest request, string name, CancellationToken cancellationToken)
    {
        if (request.Int("RetentionInDays") is { } days)
        {
            await request.Client.JsonAsync("logs", Target + "PutRetentionPolicy", ContentType, new JsonObject { ["logGroupName"] = name, ["retentionInDays"] = days }, cancellationToken);
        }
        else if (request.PreviousProperties?["RetentionInDays"] is not null)
        {
            await request.Client.JsonAsync("logs", Target + "DeleteRetentionPolicy", ContentType, new JsonObject { ["logGroupName"] = name }, cancellationToken);
        }
    }

    public override Task DeleteAsync(ProvisionRequest request, CancellationToken cancellationToken) => IgnoreNotFoundAsync(() =>
        request.Client.JsonAsync("logs", Target + "DeleteLogGroup", ContentType, new JsonObject { ["logGroupName"] = request.PhysicalId }, cancellationToken));
}
