using Lamina.Server.ApiGateway;
using Lamina.Server.Async;
using Lamina.Server.CloudFormation;
using Lamina.Server.Diagnostics;
using Lamina.Server.Durable;
using Lamina.Server.DynamoDb;
using Lamina.Server.Hosting;
using Lamina.Server.Invoke;
using Lamina.Server.Lambda;
using Lamina.Server.Protocols;
using Lamina.Server.S3;
using Lamina.Server.WebConsole;

return await CommandLine.InvokeAsync(args, ServeAsync);

static async Task<int> ServeAsync(LaminaOptions options, CancellationToken cancellationToken)
{
    var builder = WebApplication.CreateBuilder(new WebApplicationOptions
    {
        // Not the caller's working directory: ASP.NET Core watches its content root recursively (inotify) to reload
        // appsettings.json, so `lamina serve` started from / or a home directory put a watch on every directory below it
        // (58,000 from /) and woke a thread for every file written there, the data directory's included. Lamina reads
        // no settings file; its own directory holds nothing that changes, and nothing reloads.
        ContentRootPath = AppContext.BaseDirectory,
        Args = ["--hostBuilder:reloadConfigOnChange=false"],
    });
    builder.AddLaminaHost(options);
    builder.Services.AddFunctions();
    // Before AddInvoke: the stream mappings' checkpoints need the DynamoDB store running until they have stopped.
    builder.Services.AddDynamoDb();
    builder.Services.AddInvoke();
    builder.Services.AddDurable();
    builder.Services.AddS3();
    builder.Services.AddApiGateway();
    builder.Services.AddConsole();
    builder.Services.AddCloudFormation();

    var app = builder.Build();
    // Without credentials anyone who can connect may do anything: then only loopback, and it says so.
    var keys = app.Services.GetRequiredService<Lamina.Server.Security.AccessKeys>();
    if (!keys.AnyActive && !LaminaHost.IsLoopback(options.Host))
    {
        var create = options.Database is null ? $"./lamina keys create --data {options.DataDirectory}" : "./lamina keys create --database <this cluster's database URL>";
        Console.Error.WriteLine($"lamina: refusing to listen on {options.Host} without credentials; create one first ({create}) or use --host 127.0.0.1");
        return 2;
    }
    Console.WriteLine(keys.Required
        ? "lamina: requests must be signed (SigV4) by an access key of ./lamina keys"
        : "lamina: no access keys: any (or no) signature is accepted; listening on loopback only");
    _ = app.Services.GetRequiredService<Lamina.Server.Diagnostics.Tracing>(); // exports from the first invocation on, if configured
    app.UseLaminaHost();
    app.MapFunctionsApi();
    app.MapVersionsApi();
    app.MapLayersApi();
    app.MapTagsApi();
    app.MapConcurrencyApi();
    app.MapProvisionedConcurrencyApi();
    app.MapEventInvokeConfigApi();
    app.MapPermissionsApi();
    app.MapFunctionUrlsApi();
    app.MapEventSourceMappingsApi();
    app.MapEnvironmentsApi();
    app.MapClusterApi();
    app.MapAsyncEventsApi();
    app.MapMetricsApi();
    app.MapMetricsHistoryApi();
    app.MapInvokeApi();
    app.MapDurableApi();
    app.MapApiGatewayApis();
    app.MapJsonProtocols();
    return await app.RunLaminaAsync();
}
