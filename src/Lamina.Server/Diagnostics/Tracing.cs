using System.Diagnostics;
using System.Globalization;
using Lamina.Server.Hosting;
using Microsoft.Extensions.Options;
using OpenTelemetry;
using OpenTelemetry.Exporter;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;

namespace Lamina.Server.Diagnostics;

/// <summary>
/// Traces: one <c>lamina.invoke</c> span per invocation, with children for a cold start's phases
/// (<c>lamina.sandbox</c>, <c>lamina.runtime_init</c>, <c>lamina.handler_init</c>) and <c>lamina.handler</c>, exported over
/// OTLP (HTTP/protobuf) when an endpoint is configured. Without one nothing listens to the source, so no span is ever
/// created and the invoke path pays nothing.
/// </summary>
internal sealed class Tracing : IDisposable
{
    public const string SourceName = "Lamina.Server";

    public static readonly ActivitySource Source = new(SourceName);

    private readonly TracerProvider? _provider;

    public Tracing(IOptions<LaminaOptions> options)
    {
        var endpoint = options.Value.OtlpEndpoint ?? Environment.GetEnvironmentVariable("OTEL_EXPORTER_OTLP_ENDPOINT");
        if (string.IsNullOrEmpty(endpoint) || !Uri.TryCreate(endpoint, UriKind.Absolute, out var baseUri))
        {
            return;
        }
        // OTLP/HTTP puts traces under /v1/traces of the collector's base address.
        var traces = baseUri.AbsolutePath.EndsWith("/v1/traces", StringComparison.Ordinal) ? baseUri : new Uri(baseUri, baseUri.AbsolutePath.TrimEnd('/') + "/v1/traces");
        _provider = Sdk.CreateTracerProviderBuilder()
            .AddSource(SourceName)
            .ConfigureResource(resource => resource.AddService("lamina"))
            .AddOtlpExporter(otlp =>
            {
                otlp.Endpoint = traces;
                otlp.Protocol = OtlpExportProtocol.HttpProtobuf;
                otlp.BatchExportProcessorOptions.ScheduledDelayMilliseconds = 1000;
            })
            .Build();
    }

    public void Dispose() => _provider?.Dispose(); // flushes what is buffered

    /// <summary>
    /// The trace header an invocation carries (<c>Lambda-Runtime-Trace-Id</c>, <c>_X_AMZN_TRACE_ID</c>): the caller's
    /// <c>X-Amzn-Trace-Id</c>, else its W3C <c>traceparent</c> in X-Ray's form, else a new root.
    /// </summary>
    public static string TraceHeader(string? amzn, string? traceparent, TimeProvider time)
    {
        if (!string.IsNullOrWhiteSpace(amzn) && TryParseAmzn(amzn, out _))
        {
            return amzn.Trim();
        }
        if (!string.IsNullOrWhiteSpace(traceparent) && ActivityContext.TryParse(traceparent, null, out var context))
        {
            return AmznHeader(context.TraceId, context.SpanId, context.TraceFlags.HasFlag(ActivityTraceFlags.Recorded));
        }
        return Invoke.Invocation.NewTraceId(time);
    }

    /// <summary>The context an X-Ray header names (Root → trace id, Parent → span id, Sampled → recorded).</summary>
    public static bool TryParseAmzn(string header, out ActivityContext context)
    {
        context = default;
        string? root = null, parent = null;
        var sampled = false;
        foreach (var part in header.Split(';', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
        {
            if (part.StartsWith("Root=", StringComparison.Ordinal))
            {
                root = part[5..];
            }
            else if (part.StartsWith("Parent=", StringComparison.Ordinal))
            {
                parent = part[7..];
            }
            else if (part == "Sampled=1")
            {
                sampled = true;
            }
        }
        // Root=1-<8 hex epoch>-<24 hex>: the 32 hex digits are the W3C trace id.
        if (root is not { Length: 35 } || !root.StartsWith("1-", StringComparison.Ordinal) || root[10] != '-')
        {
            return false;
        }
        var traceHex = string.Concat(root.AsSpan(2, 8), root.AsSpan(11, 24));
        if (!IsHex(traceHex) || parent is not null && (parent.Length != 16 || !IsHex(parent)))
        {
            return false;
        }
        var spanId = parent is null ? default : ActivitySpanId.CreateFromString(parent);
        context = new ActivityContext(ActivityTraceId.CreateFromString(traceHex), spanId, sampled ? ActivityTraceFlags.Recorded : ActivityTraceFlags.None, isRemote: true);
        return true;
    }

    /// <summary>An X-Ray header for <paramref name="traceId"/> whose parent is <paramref name="spanId"/>.</summary>
    public static string AmznHeader(ActivityTraceId traceId, ActivitySpanId spanId, bool sampled)
    {
        var hex = traceId.ToHexString();
        return string.Create(CultureInfo.InvariantCulture, $"Root=1-{hex[..8]}-{hex[8..]};Parent={spanId.ToHexString()};Sampled={(sampled ? 1 : 0)}");
    }

    private static bool IsHex(string value)
    {
        foreach (var c in value)
        {
            if (!char.IsAsciiHexDigit(c))
            {
                return false;
            }
        }
        return true;
    }
}
