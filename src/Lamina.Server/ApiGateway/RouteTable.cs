using System.Text.RegularExpressions;

namespace Lamina.Server.ApiGateway;

/// <summary>
/// Matches a request's method and path to a route (an HTTP API's route keys, a REST API's resources and methods) the way
/// API Gateway picks the most specific one: a full match before a greedy one (<c>{proxy+}</c>) before <c>$default</c>;
/// among full matches, a literal segment before a path variable, left to right; among greedy ones, the longer prefix;
/// then a route of the request's method before <c>ANY</c>. A greedy variable takes at least one segment.
/// </summary>
/// <remarks>Routes per API are few (API Gateway allows 300): a scan per request costs less than building a trie would save.</remarks>
internal sealed partial class RouteTable<T> where T : class
{
    private readonly List<Entry> _entries = [];
    private T? _default;

    public bool IsEmpty => _entries.Count == 0 && _default is null;

    /// <summary>
    /// A REST API's table: the most specific resource for the path is chosen first, then its method (or ANY); a method the
    /// resource lacks is no match, even if a less specific resource (a greedy one) has it. HTTP APIs choose among
    /// routes with the method already matched.
    /// </summary>
    public bool ResourceFirst { get; init; }

    /// <summary>Adds a route. <paramref name="pathTemplate"/> must be valid (<see cref="RouteTemplates.Validate"/>).</summary>
    public void Add(string method, string pathTemplate, T value) => _entries.Add(new Entry(method, pathTemplate, RouteTemplates.Parse(pathTemplate), value));

    /// <summary>The <c>$default</c> route, which takes what nothing else does.</summary>
    public void SetDefault(T value) => _default = value;

    /// <summary>Every route of the table, <c>$default</c> last.</summary>
    public IEnumerable<T> Values => _default is null ? _entries.Select(static e => e.Value) : _entries.Select(static e => e.Value).Append(_default);

    /// <summary>
    /// The route for <paramref name="method"/> <paramref name="path"/> (decoded, starting with <c>/</c>), and the values of
    /// its path variables (null when it has none).
    /// </summary>
    public bool TryMatch(string method, string path, out T value, out Dictionary<string, string>? parameters)
    {
        var segments = Split(path);
        Entry? best = null;
        foreach (var entry in _entries)
        {
            if ((ResourceFirst || entry.Method == "ANY" || entry.Method == method) && Matches(entry.Template, segments) && (best is null || Compare(entry, best) > 0))
            {
                best = entry;
            }
        }
        if (ResourceFirst && best is not null)
        {
            // The resource is chosen; now its method.
            var resource = best.Path;
            best = _entries.FirstOrDefault(e => e.Path == resource && e.Method == method) ?? _entries.FirstOrDefault(e => e.Path == resource && e.Method == "ANY");
            if (best is null)
            {
                value = null!;
                parameters = null;
                return false;
            }
        }
        if (best is null)
        {
            value = _default!;
            parameters = null;
            return _default is not null;
        }
        value = best.Value;
        parameters = Bind(best.Template, segments);
        return true;
    }

    private static string[] Split(string path)
    {
        var trimmed = path.Length > 1 && path.EndsWith('/') ? path[..^1] : path;
        return trimmed is "/" or "" ? [] : trimmed.TrimStart('/').Split('/');
    }

    private static bool Matches(RouteTemplate template, string[] segments)
    {
        var fixedCount = template.Segments.Length;
        if (template.Greedy is null ? segments.Length != fixedCount : segments.Length <= fixedCount)
        {
            return false;
        }
        for (var i = 0; i < template.Segments.Length; i++)
        {
            var part = template.Segments[i];
            if (part.Literal is { } literal ? !string.Equals(literal, segments[i], StringComparison.Ordinal) : segments[i].Length == 0)
            {
                return false;
            }
        }
        return true;
    }

    private static Dictionary<string, string>? Bind(RouteTemplate template, string[] segments)
    {
        Dictionary<string, string>? parameters = null;
        for (var i = 0; i < template.Segments.Length; i++)
        {
            if (template.Segments[i].Parameter is { } name)
            {
                (parameters ??= new(StringComparer.Ordinal))[name] = segments[i];
            }
        }
        if (template.Greedy is { } greedy)
        {
            (parameters ??= new(StringComparer.Ordinal))[greedy] = string.Join('/', segments, template.Segments.Length, segments.Length - template.Segments.Length);
        }
        return parameters;
    }

    /// <summary>Positive when <paramref name="a"/> is more specific than <paramref name="b"/> (both match the request).</summary>
    private static int Compare(Entry a, Entry b)
    {
        var aFull = a.Template.Greedy is null;
        if (aFull != (b.Template.Greedy is null))
        {
            return aFull ? 1 : -1;
        }
        if (a.Template.Segments.Length != b.Template.Segments.Length)
        {
            return a.Template.Segments.Length - b.Template.Segments.Length; // greedy: the longer prefix
        }
        for (var i = 0; i < a.Template.Segments.Length; i++)
        {
            var aLiteral = a.Template.Segments[i].Literal is not null;
            if (aLiteral != (b.Template.Segments[i].Literal is not null))
            {
                return aLiteral ? 1 : -1;
            }
        }
        return (a.Method != "ANY" ? 1 : 0) - (b.Method != "ANY" ? 1 : 0);
    }

    private sealed record Entry(string Method, string Path, RouteTemplate Template, T Value);
}

/// <summary>A parsed path template: its segments before a greedy variable, and that variable's name, if any.</summary>
internal sealed record RouteTemplate(TemplateSegment[] Segments, string? Greedy);

/// <summary>A literal segment, or a path variable (its name).</summary>
internal readonly record struct TemplateSegment(string? Literal, string? Parameter);

/// <summary>Path templates as API Gateway writes them: <c>/pets/{petId}</c>, <c>/files/{proxy+}</c>.</summary>
internal static partial class RouteTemplates
{
    /// <summary>The methods a route or resource method may name (<c>ANY</c> takes the others).</summary>
    public static readonly HashSet<string> Methods = new(StringComparer.Ordinal) { "ANY", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT" };

    [GeneratedRegex(@"^\{[a-zA-Z0-9._-]+\+?\}\z", RegexOptions.CultureInvariant)]
    private static partial Regex VariablePattern();

    /// <summary>Null when <paramref name="path"/> is a valid template, else what is wrong with it.</summary>
    public static string? Validate(string path)
    {
        if (!path.StartsWith('/'))
        {
            return "a path must start with '/'";
        }
        if (path == "/")
        {
            return null;
        }
        var segments = path[1..].Split('/');
        var names = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < segments.Length; i++)
        {
            var segment = segments[i];
            if (segment.Length == 0)
            {
                return "a path may not have empty segments";
            }
            if (segment.Contains('{') || segment.Contains('}'))
            {
                if (!VariablePattern().IsMatch(segment))
                {
                    return $"'{segment}' is not a path variable: write {{name}} or {{name+}}, alone in its segment";
                }
                if (segment.EndsWith("+}", StringComparison.Ordinal) && i != segments.Length - 1)
                {
                    return "a greedy path variable ({name+}) must be the last segment";
                }
                if (!names.Add(segment.Trim('{', '}', '+')))
                {
                    return $"the path variable {segment} appears twice";
                }
            }
        }
        return null;
    }

    public static RouteTemplate Parse(string path)
    {
        if (path == "/")
        {
            return new RouteTemplate([], null);
        }
        var parts = path[1..].Split('/');
        string? greedy = null;
        var segments = new List<TemplateSegment>(parts.Length);
        foreach (var part in parts)
        {
            if (part.StartsWith('{') && part.EndsWith("+}", StringComparison.Ordinal))
            {
                greedy = part[1..^2];
            }
            else if (part.StartsWith('{'))
            {
                segments.Add(new TemplateSegment(null, part[1..^1]));
            }
            else
            {
                segments.Add(new TemplateSegment(part, null));
            }
        }
        return new RouteTemplate([.. segments], greedy);
    }
}
