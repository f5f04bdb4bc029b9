namespace Lamina.Server.Lambda;

/// <summary>A function URL's cross-origin settings (the model's <c>Cors</c>), as requested, stored and answered.</summary>
internal sealed class CorsDto
{
    public bool? AllowCredentials { get; set; }
    public List<string>? AllowHeaders { get; set; }
    public List<string>? AllowMethods { get; set; }
    public List<string>? AllowOrigins { get; set; }
    public List<string>? ExposeHeaders { get; set; }
    public int? MaxAge { get; set; }
}

/// <summary>Create/UpdateFunctionUrlConfig's body (the qualifier comes in the query).</summary>
internal sealed class FunctionUrlConfigRequest
{
    public string? AuthType { get; set; }
    public CorsDto? Cors { get; set; }
    public string? InvokeMode { get; set; }
}

/// <summary>A function URL configuration as every operation answers it and ListFunctionUrlConfigs lists it.</summary>
internal sealed class FunctionUrlConfigDto
{
    public required string FunctionUrl { get; set; }
    public required string FunctionArn { get; set; }
    public required string AuthType { get; set; }
    public CorsDto? Cors { get; set; }
    public required string CreationTime { get; set; }
    public string? LastModifiedTime { get; set; }
    public required string InvokeMode { get; set; }
}

internal sealed class ListFunctionUrlConfigsResponse
{
    public List<FunctionUrlConfigDto> FunctionUrlConfigs { get; set; } = [];
    public string? NextMarker { get; set; }
}
