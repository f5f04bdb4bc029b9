using System.Collections.Immutable;
using System.Text.Json.Serialization;

namespace Lamina.Server.ApiGateway;

// REST APIs (apigateway, 2015-07-09): the wire shapes of botocore's model, which are also what Lamina stores. Its
// timestamps are epoch seconds (rest-json's default); its lists answer as {"item": [...], "position": ...}. Records are
// treated as immutable: a change copies what it changes (dictionaries included).

internal sealed record RestApi
{
    public string? Id { get; init; }
    public string? Name { get; init; }
    public string? Description { get; init; }
    [JsonConverter(typeof(EpochSecondsConverter))]
    public DateTimeOffset? CreatedDate { get; init; }
    public string? Version { get; init; }
    public List<string>? Warnings { get; init; }
    public List<string>? BinaryMediaTypes { get; init; }
    public int? MinimumCompressionSize { get; init; }
    public string? ApiKeySource { get; init; }
    public EndpointConfiguration? EndpointConfiguration { get; init; }
    public string? Policy { get; init; }
    public Dictionary<string, string>? Tags { get; init; }
    public bool? DisableExecuteApiEndpoint { get; init; }
    public string? RootResourceId { get; init; }
    public string? ApiStatus { get; init; }

    // CreateRestApi only.
    public string? CloneFrom { get; init; }
}

internal sealed record EndpointConfiguration
{
    public List<string>? Types { get; init; }
    public string? IpAddressType { get; init; }
    public List<string>? VpcEndpointIds { get; init; }
}

internal sealed record RestResource
{
    public string? Id { get; init; }
    public string? ParentId { get; init; }
    public string? PathPart { get; init; }
    public string? Path { get; init; }
    public Dictionary<string, RestMethod>? ResourceMethods { get; init; }
}

internal sealed record RestMethod
{
    public string? HttpMethod { get; init; }
    public string? AuthorizationType { get; init; }
    public string? AuthorizerId { get; init; }
    public bool? ApiKeyRequired { get; init; }
    public string? RequestValidatorId { get; init; }
    public string? OperationName { get; init; }
    public Dictionary<string, bool>? RequestParameters { get; init; }
    public Dictionary<string, string>? RequestModels { get; init; }
    public Dictionary<string, MethodResponse>? MethodResponses { get; init; }
    public RestIntegration? MethodIntegration { get; init; }
    public List<string>? AuthorizationScopes { get; init; }
}

internal sealed record MethodResponse
{
    public string? StatusCode { get; init; }
    public Dictionary<string, bool>? ResponseParameters { get; init; }
    public Dictionary<string, string>? ResponseModels { get; init; }
}

internal sealed record RestIntegration
{
    public string? Type { get; init; }
    public string? HttpMethod { get; init; }
    public string? Uri { get; init; }
    public string? ConnectionType { get; init; }
    public string? ConnectionId { get; init; }
    public string? Credentials { get; init; }
    public Dictionary<string, string>? RequestParameters { get; init; }
    public Dictionary<string, string>? RequestTemplates { get; init; }
    public string? PassthroughBehavior { get; init; }
    public string? ContentHandling { get; init; }
    public int? TimeoutInMillis { get; init; }
    public string? CacheNamespace { get; init; }
    public List<string>? CacheKeyParameters { get; init; }
    public Dictionary<string, IntegrationResponse>? IntegrationResponses { get; init; }
    public RestTlsConfig? TlsConfig { get; init; }
}

internal sealed record IntegrationResponse
{
    public string? StatusCode { get; init; }
    public string? SelectionPattern { get; init; }
    public Dictionary<string, string>? ResponseParameters { get; init; }
    public Dictionary<string, string>? ResponseTemplates { get; init; }
    public string? ContentHandling { get; init; }
}

internal sealed record RestTlsConfig
{
    public bool? InsecureSkipVerification { get; init; }
}

internal sealed record RestAuthorizer
{
    public string? Id { get; init; }
    public string? Name { get; init; }
    public string? Type { get; init; }
    [JsonPropertyName("providerARNs")]
    public List<string>? ProviderArns { get; init; }
    public string? AuthType { get; init; }
    public string? AuthorizerUri { get; init; }
    public string? AuthorizerCredentials { get; init; }
    public string? IdentitySource { get; init; }
    public string? IdentityValidationExpression { get; init; }
    public int? AuthorizerResultTtlInSeconds { get; init; }
}

internal sealed record RestDeployment
{
    public string? Id { get; init; }
    public string? Description { get; init; }
    [JsonConverter(typeof(EpochSecondsConverter))]
    public DateTimeOffset? CreatedDate { get; init; }
    public Dictionary<string, Dictionary<string, MethodSnapshot>>? ApiSummary { get; init; }

    // CreateDeployment only.
    public string? StageName { get; init; }
    public string? StageDescription { get; init; }
    public Dictionary<string, string>? Variables { get; init; }
    public bool? TracingEnabled { get; init; }
}

internal sealed record MethodSnapshot
{
    public string? AuthorizationType { get; init; }
    public bool? ApiKeyRequired { get; init; }
}

internal sealed record RestStage
{
    public string? DeploymentId { get; init; }
    public string? ClientCertificateId { get; init; }
    public string? StageName { get; init; }
    public string? Description { get; init; }
    public bool? CacheClusterEnabled { get; init; }
    public string? CacheClusterSize { get; init; }
    public string? CacheClusterStatus { get; init; }
    public Dictionary<string, MethodSetting>? MethodSettings { get; init; }
    public Dictionary<string, string>? Variables { get; init; }
    public string? DocumentationVersion { get; init; }
    public RestAccessLogSettings? AccessLogSettings { get; init; }
    public bool? TracingEnabled { get; init; }
    public Dictionary<string, string>? Tags { get; init; }
    [JsonConverter(typeof(EpochSecondsConverter))]
    public DateTimeOffset? CreatedDate { get; init; }
    [JsonConverter(typeof(EpochSecondsConverter))]
    public DateTimeOffset? LastUpdatedDate { get; init; }
}

internal sealed record MethodSetting
{
    public bool? MetricsEnabled { get; init; }
    public string? LoggingLevel { get; init; }
    public bool? DataTraceEnabled { get; init; }
    public int? ThrottlingBurstLimit { get; init; }
    public double? ThrottlingRateLimit { get; init; }
    public bool? CachingEnabled { get; init; }
    public int? CacheTtlInSeconds { get; init; }
    public bool? CacheDataEncrypted { get; init; }
    public bool? RequireAuthorizationForCacheControl { get; init; }
    public string? UnauthorizedCacheControlHeaderStrategy { get; init; }
}

internal sealed record RestAccessLogSettings
{
    public string? Format { get; init; }
    public string? DestinationArn { get; init; }
}

internal sealed record ApiKey
{
    public string? Id { get; init; }
    public string? Value { get; init; }
    public string? Name { get; init; }
    public string? CustomerId { get; init; }
    public string? Description { get; init; }
    public bool? Enabled { get; init; }
    [JsonConverter(typeof(EpochSecondsConverter))]
    public DateTimeOffset? CreatedDate { get; init; }
    [JsonConverter(typeof(EpochSecondsConverter))]
    public DateTimeOffset? LastUpdatedDate { get; init; }
    public List<string>? StageKeys { get; init; }
    public Dictionary<string, string>? Tags { get; init; }

    // CreateApiKey only.
    public bool? GenerateDistinctId { get; init; }
}

internal sealed record UsagePlan
{
    public string? Id { get; init; }
    public string? Name { get; init; }
    public string? Description { get; init; }
    public List<ApiStage>? ApiStages { get; init; }
    public ThrottleSettings? Throttle { get; init; }
    public QuotaSettings? Quota { get; init; }
    public string? ProductCode { get; init; }
    public Dictionary<string, string>? Tags { get; init; }

    /// <summary>Lamina's own member (never answered): the ids of the API keys in the plan.</summary>
    [JsonPropertyName("laminaKeyIds")]
    public List<string>? KeyIds { get; init; }
}

internal sealed record ApiStage
{
    public string? ApiId { get; init; }
    public string? Stage { get; init; }
    public Dictionary<string, ThrottleSettings>? Throttle { get; init; }
}

internal sealed record ThrottleSettings
{
    public int? BurstLimit { get; init; }
    public double? RateLimit { get; init; }
}

internal sealed record QuotaSettings
{
    public int? Limit { get; init; }
    public int? Offset { get; init; }
    public string? Period { get; init; }
}

internal sealed record UsagePlanKey
{
    public string? Id { get; init; }
    public string? Type { get; init; }
    public string? Value { get; init; }
    public string? Name { get; init; }

    // CreateUsagePlanKey's members.
    public string? KeyId { get; init; }
    public string? KeyType { get; init; }
}

internal sealed record PatchOperation
{
    public string? Op { get; init; }
    public string? Path { get; init; }
    public string? Value { get; init; }
    public string? From { get; init; }
}

/// <summary>Every Update* body of the REST API's model: <c>{"patchOperations": [...]}</c>.</summary>
internal sealed record PatchRequest
{
    public List<PatchOperation>? PatchOperations { get; init; }
}

/// <summary>Get* list answers of apigateway: <c>{"item": [...], "position": ...}</c>.</summary>
internal sealed record RestPage<T>(List<T> Item, string? Position);

/// <summary>GetUsage's answer: usage per key, per day of the period (<c>[used, remaining]</c>).</summary>
internal sealed record UsageReport
{
    public string? UsagePlanId { get; init; }
    public string? StartDate { get; init; }
    public string? EndDate { get; init; }
    public Dictionary<string, List<List<long>>>? Values { get; init; }
}

/// <summary>What a deployment of a REST API freezes: its resources (methods and integrations) and authorizers.</summary>
internal sealed record RestApiSnapshot
{
    public List<RestResource> Resources { get; init; } = [];
    public List<RestAuthorizer> Authorizers { get; init; } = [];
    public List<string>? BinaryMediaTypes { get; init; }
    public string? ApiKeySource { get; init; }
}

/// <summary>A REST API as Lamina stores it (one row of <c>apigw_apis</c>); deployments' snapshots are rows of their own.</summary>
internal sealed record StoredRestApi
{
    public required RestApi Api { get; init; }
    public ImmutableList<RestResource> Resources { get; init; } = [];
    public ImmutableList<RestAuthorizer> Authorizers { get; init; } = [];
    public ImmutableList<RestStage> Stages { get; init; } = [];
    public ImmutableList<RestDeployment> Deployments { get; init; } = [];

    public RestApiSnapshot Snapshot() => new()
    {
        Resources = [.. Resources],
        Authorizers = [.. Authorizers],
        BinaryMediaTypes = Api.BinaryMediaTypes,
        ApiKeySource = Api.ApiKeySource,
    };
}
