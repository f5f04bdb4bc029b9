using Lamina.Server.ApiGateway;

namespace Lamina.Tests.ApiGateway;

public sealed class RouteTableTests
{
    private static RouteTable<string> CreateSut(bool resourceFirst = false, params string[] routeKeys)
    {
        var table = new RouteTable<string> { ResourceFirst = resourceFirst };
        foreach (var key in routeKeys)
        {
            if (key == "$default")
            {
                table.SetDefault(key);
                continue;
            }
            var (method, path) = LiveApi.SplitRouteKey(key);
            table.Add(method, path!, key);
        }
        return table;
    }

    // The example of API Gateway's developer guide ("Routing API requests"), plus the cases around it.
    [Theory]
    [InlineData("GET", "/pets/dog/1", "GET /pets/dog/1")]
    [InlineData("GET", "/pets/dog/2", "GET /pets/dog/{id}")]
    [InlineData("GET", "/pets/cat/1", "GET /pets/{proxy+}")]
    [InlineData("POST", "/test/5", "ANY /{proxy+}")]
    [InlineData("POST", "/pets/dog/1", "ANY /{proxy+}")]
    [InlineData("GET", "/", "$default")]
    [InlineData("GET", "/pets/dog/1/", "GET /pets/dog/1")]
    public void TryMatch_DocumentedPrecedence(string method, string path, string expected)
    {
        var table = CreateSut(false, "GET /pets/dog/1", "GET /pets/dog/{id}", "GET /pets/{proxy+}", "ANY /{proxy+}", "$default");

        Assert.True(table.TryMatch(method, path, out var route, out _));
        Assert.Equal(expected, route);
    }

    [Fact]
    public void TryMatch_LiteralBeatsVariableLeftToRight()
    {
        var table = CreateSut(false, "GET /{a}/b", "GET /a/{b}");

        Assert.True(table.TryMatch("GET", "/a/b", out var route, out var parameters));
        Assert.Equal("GET /a/{b}", route);
        Assert.Equal("b", parameters!["b"]);
    }

    [Fact]
    public void TryMatch_MethodBeatsAnyOnTheSamePath()
    {
        var table = CreateSut(false, "ANY /items", "GET /items");

        Assert.True(table.TryMatch("GET", "/items", out var get, out _));
        Assert.True(table.TryMatch("DELETE", "/items", out var delete, out _));
        Assert.Equal(("GET /items", "ANY /items"), (get, delete));
    }

    [Fact]
    public void TryMatch_BindsVariablesAndTheGreedyRest()
    {
        var table = CreateSut(false, "GET /users/{user}/files/{proxy+}");

        Assert.True(table.TryMatch("GET", "/users/ann/files/a/b/c.txt", out _, out var parameters));
        Assert.Equal(new Dictionary<string, string> { ["user"] = "ann", ["proxy"] = "a/b/c.txt" }, parameters);
    }

    [Theory]
    [InlineData("/users/ann/files")] // a greedy variable takes at least one segment
    [InlineData("/users//files/x")] // a variable takes a non-empty segment
    [InlineData("/Users/ann/files/x")] // literals are case-sensitive
    public void TryMatch_NoMatchWithoutDefault(string path)
    {
        var table = CreateSut(false, "GET /users/{user}/files/{proxy+}");

        Assert.False(table.TryMatch("GET", path, out _, out _));
    }

    [Fact]
    public void TryMatch_ResourceFirst_AMissingMethodIsNoMatchEvenWithAGreedySibling()
    {
        var table = CreateSut(true, "GET /items/{id}", "ANY /{proxy+}");

        Assert.True(table.TryMatch("GET", "/items/1", out var get, out _));
        Assert.Equal("GET /items/{id}", get);
        Assert.False(table.TryMatch("DELETE", "/items/1", out _, out _));
        Assert.True(table.TryMatch("DELETE", "/other/1", out var other, out _));
        Assert.Equal("ANY /{proxy+}", other);
    }

    [Theory]
    [InlineData("/", null)]
    [InlineData("/a/{b}/c/{d+}", null)]
    [InlineData("a", "a path must start with '/'")]
    [InlineData("/a//b", "a path may not have empty segments")]
    [InlineData("/{proxy+}/x", "a greedy path variable ({name+}) must be the last segment")]
    [InlineData("/x{y}", "'x{y}' is not a path variable: write {name} or {name+}, alone in its segment")]
    [InlineData("/{a}/{a}", "the path variable {a} appears twice")]
    public void Validate_ExplainsWhatIsWrong(string path, string? expected)
    {
        Assert.Equal(expected, RouteTemplates.Validate(path));
    }
}
