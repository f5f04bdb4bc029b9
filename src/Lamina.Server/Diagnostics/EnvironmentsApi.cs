using Lamina.Server.Invoke;
using Lamina.Server.Lambda;
using Lamina.Server.Protocols;

namespace Lamina.Server.Diagnostics;

/// <summary>
/// Lamina's own operator view of execution environments (no Lambda equivalent): what runs, for which version, in
/// which state, why it was started and how long its cold start took; and the node's memory budget.
/// </summary>
internal static class EnvironmentsApi
{
    public static IEndpointRouteBuilder MapEnvironmentsApi(this IEndpointRouteBuilder endpoints)
    {
        endpoints.MapGet("/lamina/v1/environments", List);
        return endpoints;
    }

    private static Microsoft.AspNetCore.Http.HttpResults.JsonHttpResult<EnvironmentsResponse> List(EnvironmentPool pool)
    {
        var response = new EnvironmentsResponse { MemoryBudgetMB = pool.MemoryBudgetMb, MemoryInUseMB = pool.MemoryInUseMb };
        foreach (var (environment, state) in pool.Snapshot())
        {
            var coldStart = environment.ColdStart;
            response.Environments.Add(new ExecutionEnvironmentDto
            {
                Id = environment.Id,
                FunctionName = environment.Config.Name,
                Version = environment.Config.Version,
                State = state,
                InitializationType = environment.ProvisionedInit ? "provisioned-concurrency" : "on-demand",
                Provisioned = environment.Provisioned is not null,
                MemorySize = environment.Config.MemorySize,
                StartedAt = FunctionConfigurationMapping.FormatTimestamp(environment.StartedAt),
                ColdStartReason = ColdStart.Label(coldStart.Reason),
                SandboxMs = Math.Round(coldStart.SandboxMs, 3),
                InitMs = coldStart.InitMs is { } init ? Math.Round(init, 3) : null,
                HandlerInitMs = coldStart.HandlerInitMs is { } handler ? Math.Round(handler, 3) : null,
            });
        }
        response.Environments.Sort(static (a, b) => string.CompareOrdinal(a.StartedAt, b.StartedAt));
        return FunctionsApi.Json(response, LaminaJsonContext.Default.EnvironmentsResponse);
    }
}

internal sealed class EnvironmentsResponse
{
    public int MemoryBudgetMB { get; set; }
    public int MemoryInUseMB { get; set; }
    public List<ExecutionEnvironmentDto> Environments { get; set; } = [];
}

internal sealed class ExecutionEnvironmentDto
{
    public string Id { get; set; } = "";
    public string FunctionName { get; set; } = "";
    public string Version { get; set; } = "";
    public string State { get; set; } = "";
    public string InitializationType { get; set; } = "";
    public bool Provisioned { get; set; }
    public int MemorySize { get; set; }
    public string StartedAt { get; set; } = "";
    public string ColdStartReason { get; set; } = "";
    public double SandboxMs { get; set; }
    public double? InitMs { get; set; }
    public double? HandlerInitMs { get; set; }
}
