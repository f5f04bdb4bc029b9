namespace Lamina.Server.Lambda;

/// <summary>PutFunctionConcurrency's request, its answer, GetFunctionConcurrency's and GetFunction's <c>Concurrency</c>.</summary>
internal sealed class ConcurrencyDto
{
    public int? ReservedConcurrentExecutions { get; set; }
}

internal sealed class GetAccountSettingsResponse
{
    public AccountLimitDto AccountLimit { get; set; } = new();
    public AccountUsageDto AccountUsage { get; set; } = new();
}

internal sealed class AccountLimitDto
{
    public long TotalCodeSize { get; set; }
    public long CodeSizeUnzipped { get; set; }
    public long CodeSizeZipped { get; set; }
    public int ConcurrentExecutions { get; set; }
    public int UnreservedConcurrentExecutions { get; set; }
}

internal sealed class AccountUsageDto
{
    public long TotalCodeSize { get; set; }
    public long FunctionCount { get; set; }
}

/// <summary>PutProvisionedConcurrencyConfig's request.</summary>
internal sealed class PutProvisionedConcurrencyRequest
{
    public int? ProvisionedConcurrentExecutions { get; set; }
}

/// <summary>Put/GetProvisionedConcurrencyConfig's answer, and (with <see cref="FunctionArn"/>) a list item.</summary>
internal sealed class ProvisionedConcurrencyConfigDto
{
    public string? FunctionArn { get; set; }
    public int RequestedProvisionedConcurrentExecutions { get; set; }
    public int AvailableProvisionedConcurrentExecutions { get; set; }
    public int AllocatedProvisionedConcurrentExecutions { get; set; }
    public string Status { get; set; } = "IN_PROGRESS";
    public string? StatusReason { get; set; }
    public string LastModified { get; set; } = "";
}

internal sealed class ListProvisionedConcurrencyConfigsResponse
{
    public List<ProvisionedConcurrencyConfigDto> ProvisionedConcurrencyConfigs { get; set; } = [];
    public string? NextMarker { get; set; }
}
