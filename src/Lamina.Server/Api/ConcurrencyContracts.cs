namespace Lamina.Server.Api;

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
