using System.Net;
using Lamina.Server.Protocols;
using Lamina.Server.RuntimeApi;
using Lamina.Server.S3;
using Microsoft.AspNetCore.Diagnostics;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.Options;

namespace Lamina.Server.Hosting;

/// <summary>Host wiring shared by every capability: options, Kestrel endpoints, request ids, errors, health.</summary>
internal static partial class LaminaHost
{
    public static WebApplicationBuilder AddLaminaHost(this WebApplicationBuilder builder, LaminaOptions options)
    {
        Directory.CreateDirectory(options.DataDirectory);
        builder.Services.AddSingleton(Options.Create(options));
        builder.Services.AddSingleton(TimeProvider.System);
        builder.Services.ConfigureHttpJsonOptions(json => json.SerializerOptions.TypeInfoResolverChain.Insert(0, LaminaJsonContext.Default));
        builder.Logging.AddFilter("Microsoft.AspNetCore", LogLevel.Warning);
        builder.Logging.AddFilter("Microsoft.Hosting.Lifetime", LogLevel.Warning);
        // It logs at Information only, but while any of its levels is on, ASP.NET Core starts an Activity and a logging
        // scope for every request (~10% of a warm invoke's allocation, issue #19).
        builder.Logging.AddFilter("Microsoft.AspNetCore.Hosting.Diagnostics", LogLevel.None);
        // It logs every exception it handles with its stack; Lamina's handler (UseLaminaHost) logs what is worth logging, once.
        builder.Logging.AddFilter("Microsoft.AspNetCore.Diagnostics.ExceptionHandlerMiddleware", LogLevel.None);
        builder.Logging.AddSimpleConsole(console =>
        {
            console.SingleLine = true;
            console.TimestampFormat = "HH:mm:ss.fff ";
        });
        OutageLogging.Wrap(builder.Services);
        // Shut environments down within a bounded time on SIGTERM / Ctrl-C.
        builder.Services.Configure<HostOptions>(host => host.ShutdownTimeout = TimeSpan.FromSeconds(10));

        // Warm invokes run on the I/O threads, everything else on the thread pool (issue #19): before any socket exists.
        IoThreads.Configure(builder.WebHost);
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.AddServerHeader = false;
            // Each API caps its own body (6 MB invoke, ~70 MB code upload) and answers with AWS's error, not Kestrel's.
            kestrel.Limits.MaxRequestBodySize = null;
            var address = options.Host is "localhost" ? IPAddress.Loopback : IPAddress.Parse(options.Host);
            kestrel.Listen(address, options.Port);
            kestrel.Listen(new RuntimeApiEndPoint());
        });
        return builder;
    }

    public static WebApplication UseLaminaHost(this WebApplication app)
    {
        // Everything but Invoke leaves the I/O threads first (see IoThreads).
        app.UseIoThreadGuard();
        // Runtime API connections (from sandboxes) are served first and never reach anything else.
        app.UseRuntimeApi();
        app.UseRequestIds();
        // Unexpected exceptions anywhere after this point: a 500 in AWS's shape, never a stack trace on the wire.
        app.UseExceptionHandler(errors => errors.Run(static async context =>
        {
            var error = context.Features.Get<IExceptionHandlerFeature>()?.Error;
            // The handler starts from a cleared response: the request id goes back on.
            context.Response.Headers["x-amzn-RequestId"] = RequestIds.Of(context);
            var logger = context.RequestServices.GetRequiredService<ILoggerFactory>().CreateLogger("Lamina.Server");
            if (error is BadHttpRequestException bad)
            {
                await new AwsError(bad.StatusCode, "InvalidRequestContentException", bad.Message).ExecuteAsync(context);
                return;
            }
            if (error is not null && Storage.Sql.IsUnavailable(error))
            {
                // Not a bug: the database is down, unreachable, restarting or too slow. Nothing was half-written (each
                // write is one transaction); the caller is told so, and the SDKs retry such an answer on their own.
                var database = context.RequestServices.GetRequiredService<Storage.Database>().SharedDescription;
                Log.DatabaseUnavailable(logger, context.Request.Method, context.Request.Path, database, error.Message);
                await ServerErrorAsync(context, unavailable: true, $"The server's database is unavailable ({error.Message}); retry the request");
                return;
            }
            Log.UnhandledRequestError(logger, context.Request.Method, context.Request.Path, error);
            // Never a stack trace on the wire.
            await ServerErrorAsync(context, unavailable: false, "An internal error occurred; the server log has the details");
        }));
        // Inside the exception handler, so client mistakes in the HTTP framing never reach it (nor its error log).
        app.UseRequestGuard();
        // Function URLs authenticate on their own terms (AuthType NONE needs no signature) and never reach the API.
        Lambda.FunctionUrlEndpoint.UseFunctionUrls(app);
        // So do API Gateway's APIs (their routes' authorizers, or none).
        ApiGateway.ApiGatewayServiceCollectionExtensions.UseExecuteApi(app);
        // The web console's static files: unsigned GETs of /console/… only, before S3 would take "console" for a bucket.
        WebConsole.ConsoleAssets.UseConsole(app);
        // S3 streams its bodies and checks its own signatures (S3's canonical form, aws-chunked uploads), in XML.
        app.UseS3();
        app.UseSigV4();
        // Unknown paths and methods get an AWS-shaped error too, never an empty 404/405.
        app.UseStatusCodePages(static async context =>
        {
            var http = context.HttpContext;
            var error = http.Response.StatusCode == StatusCodes.Status405MethodNotAllowed
                ? new AwsError(405, "UnknownOperationException", $"The operation {http.Request.Method} {http.Request.Path} is not supported.")
                : new AwsError(http.Response.StatusCode, "UnknownOperationException", $"No Lambda operation matches {http.Request.Method} {http.Request.Path}.");
            await error.ExecuteAsync(http);
        });
        // Routing after the error handler, so a routing failure is answered in AWS's shape too.
        app.UseRouting();
        Lambda.FreshReads.UseFreshFunctionReads(app); // needs the route's {name}
        app.MapGet("/health", static () => Results.Text("ok"));
        return app;
    }

    /// <summary>
    /// A server-side failure in the shape of the protocol the request spoke, so that the client's SDK reads its code (and
    /// retries): the AWS JSON protocols (<c>X-Amz-Target</c>: SQS, CloudWatch Logs, EventBridge) take <c>__type</c>,
    /// the Query protocols (a form posted: SNS, CloudFormation, SQS's older one) an XML <c>ErrorResponse</c>, Lambda
    /// and the rest its REST JSON. Lambda answers 500 <c>ServiceException</c> for both; the others 503
    /// <c>ServiceUnavailable</c> when the database is away and 500 <c>InternalFailure</c> otherwise (AWS's common errors).
    /// </summary>
    private static async Task ServerErrorAsync(HttpContext context, bool unavailable, string message)
    {
        var request = context.Request;
        var (status, code) = unavailable ? (StatusCodes.Status503ServiceUnavailable, "ServiceUnavailable") : (StatusCodes.Status500InternalServerError, "InternalFailure");
        if (request.Headers.ContainsKey("X-Amz-Target"))
        {
            await Protocols.JsonProtocolEndpoint.WriteErrorAsync(context, code, message, status);
            return;
        }
        if (HttpMethods.IsPost(request.Method) && request.HasFormContentType)
        {
            var xml = new System.Text.StringBuilder("<ErrorResponse><Error><Type>Receiver</Type>");
            Protocols.QueryProtocol.Element(xml, "Code", code);
            Protocols.QueryProtocol.Element(xml, "Message", message);
            xml.Append("</Error>");
            Protocols.QueryProtocol.Element(xml, "RequestId", RequestIds.Of(context));
            xml.Append("</ErrorResponse>");
            await Protocols.QueryProtocol.WriteXmlAsync(context, status, xml);
            return;
        }
        await AwsError.Service(message).ExecuteAsync(context);
    }

    /// <summary>Whether <paramref name="host"/> is a loopback address or name (what may be served without credentials).</summary>
    public static bool IsLoopback(string host) =>
        host is "localhost" || (System.Net.IPAddress.TryParse(host.Trim('[', ']'), out var address) && System.Net.IPAddress.IsLoopback(address));

    /// <summary>Starts the server, prints where it listens, and runs until SIGTERM / Ctrl-C; 1 when it cannot listen.</summary>
    public static async Task<int> RunLaminaAsync(this WebApplication app)
    {
        try
        {
            await app.StartAsync();
        }
        catch (IOException e) when (e.InnerException is Microsoft.AspNetCore.Connections.AddressInUseException or System.Net.Sockets.SocketException)
        {
            // Another server on the port, or an address this machine does not have: say so, without a stack trace.
            var options = app.Services.GetRequiredService<IOptions<LaminaOptions>>().Value;
            var reason = e.InnerException is Microsoft.AspNetCore.Connections.AddressInUseException ? "the address is already in use" : e.InnerException.Message;
            Console.Error.WriteLine($"lamina: cannot listen on {options.Host}:{options.Port}: {reason}");
            return 1;
        }
        var addresses = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()?.Addresses ?? [];
        foreach (var address in addresses.Where(a => a.StartsWith("http://", StringComparison.Ordinal) && !a.Contains("lamina-runtime-api", StringComparison.Ordinal)))
        {
            var shown = address.Replace("[::]", "127.0.0.1", StringComparison.Ordinal);
            Console.WriteLine($"lamina: listening on {shown}");
            Console.WriteLine($"lamina: web console at {shown}{WebConsole.ConsoleAssets.PathPrefix}/");
        }
        Console.Out.Flush();
        await app.WaitForShutdownAsync();
        return 0;
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = Diagnostics.EventIds.UnhandledRequestError, Level = LogLevel.Error, Message = "Unhandled error in {Method} {Path}")]
        public static partial void UnhandledRequestError(ILogger logger, string method, string path, Exception? error);

        [LoggerMessage(EventId = Diagnostics.EventIds.DatabaseUnavailable, Level = LogLevel.Warning,
            Message = "{Method} {Path} failed: the database ({Database}) is unavailable: {Reason}")]
        public static partial void DatabaseUnavailable(ILogger logger, string method, string path, string database, string reason);
    }
}
