namespace Lamina.Server.Lambda;

// Wire shapes of layers (botocore lambda/2015-03-31 service-2.json), conventions as in FunctionsContracts.cs.
// Registered in LaminaJsonContext.cs.

internal sealed class PublishLayerVersionRequest
{
    public string? Description { get; set; }
    public LayerVersionContentInputDto? Content { get; set; }
    public List<string>? CompatibleRuntimes { get; set; }
    public string? LicenseInfo { get; set; }
    public List<string>? CompatibleArchitectures { get; set; }
}

internal sealed class LayerVersionContentInputDto
{
    public string? S3Bucket { get; set; }
    public string? S3Key { get; set; }
    public string? S3ObjectVersion { get; set; }
    public byte[]? ZipFile { get; set; }
}

internal sealed class LayerVersionContentOutputDto
{
    public string? Location { get; set; }
    public string? CodeSha256 { get; set; }
    public long CodeSize { get; set; }
}

/// <summary>PublishLayerVersion's, GetLayerVersion's and GetLayerVersionByArn's response, members in the model's order.</summary>
internal sealed class LayerVersionResponse
{
    public LayerVersionContentOutputDto? Content { get; set; }
    public string? LayerArn { get; set; }
    public string? LayerVersionArn { get; set; }
    public string? Description { get; set; }
    public string? CreatedDate { get; set; }
    public long Version { get; set; }
    public List<string>? CompatibleRuntimes { get; set; }
    public string? LicenseInfo { get; set; }
    public List<string>? CompatibleArchitectures { get; set; }
}

internal sealed class LayerVersionsListItemDto
{
    public string? LayerVersionArn { get; set; }
    public long Version { get; set; }
    public string? Description { get; set; }
    public string? CreatedDate { get; set; }
    public List<string>? CompatibleRuntimes { get; set; }
    public string? LicenseInfo { get; set; }
    public List<string>? CompatibleArchitectures { get; set; }
}

internal sealed class LayersListItemDto
{
    public string? LayerName { get; set; }
    public string? LayerArn { get; set; }
    public LayerVersionsListItemDto? LatestMatchingVersion { get; set; }
}

internal sealed class ListLayersResponse
{
    public string? NextMarker { get; set; }
    public List<LayersListItemDto> Layers { get; set; } = [];
}

internal sealed class ListLayerVersionsResponse
{
    public string? NextMarker { get; set; }
    public List<LayerVersionsListItemDto> LayerVersions { get; set; } = [];
}
