namespace Lamina.Server.Lambda;

/// <summary>Put/UpdateFunctionEventInvokeConfig's request (the same members; Update merges them into the current settings).</summary>
internal sealed class EventInvokeConfigRequest
{
    public int? MaximumRetryAttempts { get; set; }
    public int? MaximumEventAgeInSeconds { get; set; }
    public DestinationConfigDto? DestinationConfig { get; set; }
}

/// <summary>Where records of asynchronous invocations go: <c>{OnSuccess:{Destination}, OnFailure:{Destination}}</c>.</summary>
internal sealed class DestinationConfigDto
{
    public DestinationDto? OnSuccess { get; set; }
    public DestinationDto? OnFailure { get; set; }
}

internal sealed class DestinationDto
{
    public string? Destination { get; set; }
}

/// <summary>
/// Put/Update/GetFunctionEventInvokeConfig's answer and a list item. <see cref="LastModified"/> is a JSON number of
/// epoch seconds with milliseconds (the model's timestamp), not a string. Lambda always writes
/// <c>DestinationConfig</c> with both members, empty objects when unset.
/// </summary>
internal sealed class FunctionEventInvokeConfigDto
{
    public decimal LastModified { get; set; }
    public string FunctionArn { get; set; } = "";
    public int? MaximumRetryAttempts { get; set; }
    public int? MaximumEventAgeInSeconds { get; set; }
    public DestinationConfigDto DestinationConfig { get; set; } = new();
}

internal sealed class ListFunctionEventInvokeConfigsResponse
{
    public List<FunctionEventInvokeConfigDto> FunctionEventInvokeConfigs { get; set; } = [];
    public string? NextMarker { get; set; }
}
