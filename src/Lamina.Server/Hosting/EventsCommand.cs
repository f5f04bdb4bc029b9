using System.CommandLine;
using System.Globalization;
using System.Net.Http.Headers;

namespace Lamina.Server.Hosting;

/// <summary>
/// <c>lamina events</c>: the operator's view of failed asynchronous work, over the server's
/// <c>/lamina/v1/async-events</c> API. Prints the server's JSON.
/// </summary>
internal static class EventsCommand
{
    public static Command Build()
    {
        var list = new Command("list", "Queued, running and failed async events, oldest first (default: 100 of them)");
        var listEndpoint = CommandLine.EndpointOption();
        var listFunction = new Option<string>("--function") { Description = "Only this function's events", HelpName = "name" };
        var state = new Option<string>("--state") { Description = "Only events in this state", HelpName = "queued|running|failed" };
        state.AcceptOnlyFromAmong("queued", "running", "failed");
        var limit = new Option<int?>("--limit")
        {
            Description = "At most this many events",
            HelpName = "n",
            CustomParser = r => int.TryParse(CommandLine.Single(r), NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n >= 1
                ? n
                : CommandLine.Fail<int?>(r, $"--limit must be a number, at least 1, not '{CommandLine.Single(r)}'"),
        };
        list.Options.Add(listFunction);
        list.Options.Add(state);
        list.Options.Add(limit);
        list.Options.Add(listEndpoint);
        list.SetAction(r => SendAsync(r.GetValue(listEndpoint)!, HttpMethod.Get, "/lamina/v1/async-events",
            Query(("function", r.GetValue(listFunction)), ("state", r.GetValue(state)), ("limit", r.GetValue(limit)?.ToString(CultureInfo.InvariantCulture)))));

        var show = new Command("show", "One event: its payload, attempts, last error");
        var showEndpoint = CommandLine.EndpointOption();
        var showId = new Argument<string>("id") { Description = "The event's id (its request id)" };
        show.Arguments.Add(showId);
        show.Options.Add(showEndpoint);
        show.SetAction(r => SendAsync(r.GetValue(showEndpoint)!, HttpMethod.Get, "/lamina/v1/async-events/" + Uri.EscapeDataString(r.GetValue(showId)!), []));

        return new Command("events", "List, inspect, redrive and purge async events (over the server's /lamina/v1/async-events)")
        {
            list,
            show,
            Selecting("redrive", "Queue failed events again (attempts and age start afresh)", HttpMethod.Post, "/lamina/v1/async-events/redrive"),
            Selecting("purge", "Delete failed events", HttpMethod.Delete, "/lamina/v1/async-events"),
        };
    }

    // redrive and purge: one event by id, a function's, or all of them.
    private static Command Selecting(string name, string description, HttpMethod method, string path)
    {
        var command = new Command(name, description + ": ID, --function NAME or --all");
        var endpoint = CommandLine.EndpointOption();
        var id = new Argument<string?>("id") { Description = "One event's id", Arity = ArgumentArity.ZeroOrOne };
        var function = new Option<string>("--function") { Description = "Every failed event of this function", HelpName = "name" };
        var all = new Option<bool>("--all") { Description = "Every failed event" };
        command.Arguments.Add(id);
        command.Options.Add(function);
        command.Options.Add(all);
        command.Options.Add(endpoint);
        // Nothing selected goes to the server all the same: it refuses, and says how to ask for all (one rule, there).
        command.SetAction(r => SendAsync(r.GetValue(endpoint)!, method, path,
            Query(("function", r.GetValue(function)), ("all", r.GetValue(all) ? "true" : null), ("id", r.GetValue(id)))));
        return command;
    }

    private static List<string> Query(params (string Name, string? Value)[] parameters) =>
        [.. parameters.Where(static p => p.Value is not null).Select(static p => p.Name + "=" + Uri.EscapeDataString(p.Value!))];

    private static async Task<int> SendAsync(string endpoint, HttpMethod method, string path, List<string> query)
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(30) };
        var uri = new Uri(endpoint.TrimEnd('/') + path + (query.Count > 0 ? "?" + string.Join('&', query) : ""));
        try
        {
            using var request = new HttpRequestMessage(method, uri);
            request.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue("application/json"));
            Protocols.SigV4.SignFromEnvironment(request, [], "lamina", TimeProvider.System.GetUtcNow());
            using var response = await http.SendAsync(request);
            var body = await response.Content.ReadAsStringAsync();
            if (!response.IsSuccessStatusCode)
            {
                Console.Error.WriteLine($"lamina events: {(int)response.StatusCode} {body}");
                return 1;
            }
            Console.WriteLine(body);
            return 0;
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
        {
            Console.Error.WriteLine($"lamina events: cannot reach the server at {endpoint}: {e.Message}");
            return 1;
        }
    }
}
