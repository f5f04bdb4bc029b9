using System.CommandLine;
using System.Globalization;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;

namespace Lamina.Server.Hosting;

/// <summary>
/// <c>lamina logs FUNCTION [--follow]</c>: a function's log lines for people without the AWS CLI, read through the
/// server's CloudWatch Logs API (FilterLogEvents on <c>/aws/lambda/FUNCTION</c>), oldest first.
/// </summary>
internal static class LogsCommand
{
    public static Command Build()
    {
        var function = new Argument<string?>("function") { Description = "The function whose log group (/aws/lambda/FUNCTION) to read", Arity = ArgumentArity.ZeroOrOne };
        var follow = new Option<bool>("--follow", "-f") { Description = "Keep printing new lines as they come (Ctrl-C to stop)" };
        var since = new Option<double>("--since")
        {
            Description = "Start this many minutes ago",
            HelpName = "minutes",
            DefaultValueFactory = _ => 10,
            CustomParser = r => double.TryParse(CommandLine.Single(r), NumberStyles.Float, CultureInfo.InvariantCulture, out var minutes) && minutes > 0
                ? minutes
                : CommandLine.Fail<double>(r, $"--since must be a number of minutes above 0, not '{CommandLine.Single(r)}'"),
        };
        var filter = new Option<string>("--filter") { Description = "A CloudWatch filter pattern, e.g. ERROR or '{ $.level = \"ERROR\" }'", HelpName = "pattern" };
        var group = new Option<string>("--group") { Description = "A custom log group (LoggingConfig.LogGroup) instead of /aws/lambda/FUNCTION", HelpName = "name" };
        var endpoint = CommandLine.EndpointOption();
        var command = new Command("logs", "Print a function's log lines (default: the last 10 minutes), each with its stream and time")
        {
            function, follow, since, filter, group, endpoint,
        };
        command.Validators.Add(r =>
        {
            if (r.GetValue(function) is null && r.GetValue(group) is null)
            {
                r.AddError("name the function (or --group)");
            }
        });
        command.SetAction(async (r, _) =>
        {
            // Ctrl-C ends --follow cleanly (exit 0) rather than killing the process.
            using var interrupted = new CancellationTokenSource();
            ConsoleCancelEventHandler onCancel = (_, e) =>
            {
                e.Cancel = true;
                interrupted.Cancel();
            };
            Console.CancelKeyPress += onCancel;
            try
            {
                return await RunAsync(r.GetValue(endpoint)!, r.GetValue(group) ?? "/aws/lambda/" + r.GetValue(function), r.GetValue(follow),
                    r.GetValue(since), r.GetValue(filter), interrupted.Token);
            }
            finally
            {
                Console.CancelKeyPress -= onCancel;
            }
        });
        return command;
    }

    private static async Task<int> RunAsync(string endpoint, string group, bool follow, double sinceMinutes, string? filter, CancellationToken cancellationToken)
    {
        using var http = new HttpClient { BaseAddress = new Uri(endpoint.TrimEnd('/') + "/"), Timeout = TimeSpan.FromSeconds(30) };
        var start = TimeProvider.System.GetUtcNow().AddMinutes(-sinceMinutes).ToUnixTimeMilliseconds();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        try
        {
            while (true)
            {
                string? token = null;
                var newest = start;
                do
                {
                    var (events, next, error) = await FilterAsync(http, group, start, filter, token, cancellationToken);
                    if (error is not null)
                    {
                        // A function not invoked yet has no group: keep waiting when following.
                        if (follow && error.Contains("ResourceNotFoundException", StringComparison.Ordinal))
                        {
                            break;
                        }
                        Console.Error.WriteLine($"lamina logs: {error}");
                        return 1;
                    }
                    foreach (var e in events)
                    {
                        if (seen.Add(e.Id))
                        {
                            var time = DateTimeOffset.FromUnixTimeMilliseconds(e.Timestamp).UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'", CultureInfo.InvariantCulture);
                            Console.WriteLine($"{time} {e.Stream} {e.Message}");
                        }
                        newest = Math.Max(newest, e.Timestamp);
                    }
                    token = next;
                }
                while (token is not null);
                if (!follow)
                {
                    return 0;
                }
                start = newest; // the same millisecond may get more lines: seen ids are skipped
                await Task.Delay(TimeSpan.FromSeconds(1), cancellationToken);
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            return 0;
        }
        catch (HttpRequestException e)
        {
            Console.Error.WriteLine($"lamina logs: cannot reach the server at {endpoint}: {e.Message}");
            return 1;
        }
    }

    private static async Task<(List<Event> Events, string? Next, string? Error)> FilterAsync(HttpClient http, string group, long start, string? filter, string? token, CancellationToken cancellationToken)
    {
        using var body = new MemoryStream();
        using (var w = new Utf8JsonWriter(body))
        {
            w.WriteStartObject();
            w.WriteString("logGroupName", group);
            w.WriteNumber("startTime", start);
            if (filter is not null)
            {
                w.WriteString("filterPattern", filter);
            }
            if (token is not null)
            {
                w.WriteString("nextToken", token);
            }
            w.WriteEndObject();
        }
        var bytes = body.ToArray();
        using var request = new HttpRequestMessage(HttpMethod.Post, http.BaseAddress) { Content = new ByteArrayContent(bytes) };
        request.Content.Headers.ContentType = new MediaTypeHeaderValue("application/x-amz-json-1.1");
        request.Headers.Add("X-Amz-Target", "Logs_20140328.FilterLogEvents");
        Protocols.SigV4.SignFromEnvironment(request, bytes, "logs", TimeProvider.System.GetUtcNow());
        using var response = await http.SendAsync(request, cancellationToken);
        var text = await response.Content.ReadAsStringAsync(cancellationToken);
        using var document = JsonDocument.Parse(string.IsNullOrEmpty(text) ? "{}" : text);
        var root = document.RootElement;
        if (!response.IsSuccessStatusCode)
        {
            var type = root.TryGetProperty("__type", out var t) ? t.GetString() : ((int)response.StatusCode).ToString(CultureInfo.InvariantCulture);
            var message = root.TryGetProperty("message", out var m) ? m.GetString() : text;
            return ([], null, new StringBuilder().Append(type).Append(": ").Append(message).ToString());
        }
        var events = new List<Event>();
        foreach (var e in root.GetProperty("events").EnumerateArray())
        {
            events.Add(new Event(e.GetProperty("eventId").GetString()!, e.GetProperty("logStreamName").GetString()!,
                e.GetProperty("timestamp").GetInt64(), e.GetProperty("message").GetString()!));
        }
        return (events, root.TryGetProperty("nextToken", out var next) ? next.GetString() : null, null);
    }

    private readonly record struct Event(string Id, string Stream, long Timestamp, string Message);
}
