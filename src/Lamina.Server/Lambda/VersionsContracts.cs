namespace Lamina.Server.Lambda;

// Wire shapes of versions and aliases (botocore lambda/2015-03-31 service-2.json), conventions as in
// FunctionsContracts.cs. Registered in LaminaJsonContext.cs.

internal sealed class PublishVersionRequest
{
    public string? CodeSha256 { get; set; }
    public string? Description { get; set; }
    public string? RevisionId { get; set; }
    public string? PublishTo { get; set; }
}

internal sealed class ListVersionsByFunctionResponse
{
    public string? NextMarker { get; set; }
    public List<FunctionConfigurationDto> Versions { get; set; } = [];
}

internal sealed class AliasRoutingConfigurationDto
{
    public Dictionary<string, double>? AdditionalVersionWeights { get; set; }
}

internal sealed class CreateAliasRequest
{
    public string? Name { get; set; }
    public string? FunctionVersion { get; set; }
    public string? Description { get; set; }
    public AliasRoutingConfigurationDto? RoutingConfig { get; set; }
}

internal sealed class UpdateAliasRequest
{
    public string? FunctionVersion { get; set; }
    public string? Description { get; set; }
    public AliasRoutingConfigurationDto? RoutingConfig { get; set; }
    public string? RevisionId { get; set; }
}

/// <summary>Lambda's <c>AliasConfiguration</c>, members in the model's order.</summary>
internal sealed class AliasConfigurationDto
{
    public string? AliasArn { get; set; }
    public string? Name { get; set; }
    public string? FunctionVersion { get; set; }
    public string? Description { get; set; }
    public AliasRoutingConfigurationDto? RoutingConfig { get; set; }
    public string? RevisionId { get; set; }
}

internal sealed class ListAliasesResponse
{
    public string? NextMarker { get; set; }
    public List<AliasConfigurationDto> Aliases { get; set; } = [];
}
