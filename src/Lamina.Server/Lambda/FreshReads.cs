using Lamina.Server.Hosting;
using Microsoft.Extensions.Options;

namespace Lamina.Server.Lambda;

/// <summary>
/// On a cluster node, a Lambda API request that names a function in its path (<c>…/functions/{name}…</c>, Invoke
/// aside) first rereads that function from PostgreSQL. A node hears of another node's write within milliseconds; a client that writes through
/// one node and reads through another at once (CreateFunction then GetFunction behind a round-robin balancer, as
/// deployment tools do; AddPermission or PutFunctionConcurrency right after CreateFunction) would otherwise be
/// answered from what this node had heard so far. One query per such request; Invoke rereads
/// only when it does not find the function (InvokeApi), so its warm path still touches no database.
/// </summary>
internal static class FreshReads
{
    public static IApplicationBuilder UseFreshFunctionReads(this IApplicationBuilder app)
    {
        var options = app.ApplicationServices.GetRequiredService<IOptions<LaminaOptions>>().Value;
        if (options.Database is null)
        {
            return app; // a single machine: the registry is the store's only writer
        }
        var registry = app.ApplicationServices.GetRequiredService<FunctionRegistry>();
        return app.Use(async (context, next) =>
        {
            if (context.GetRouteValue("name") is string raw && context.Request.Path.Value is { } path
                && path.Contains("/functions/", StringComparison.Ordinal) && !path.Contains("/invocations", StringComparison.Ordinal)
                && FunctionReference.ParseFunctionName(raw, options, Protocols.CallerIdentity.AccountOf(context, options), out var name) is null)
            {
                await registry.RereadAsync(name!);
            }
            await next(context);
        });
    }
}
