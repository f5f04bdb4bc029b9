using Lamina.Server.Protocols;

namespace Lamina.Tests.Protocols;

public sealed class QueryProtocolTests
{
    [Fact]
    public void Escape_keeps_what_xml_carries_and_replaces_what_it_cannot()
    {
        Assert.Equal("a &lt;b&gt; &amp; &quot;c&quot;\ttab\nline&#xD;", QueryProtocol.Escape("a <b> & \"c\"\ttab\nline\r"));
        Assert.Equal("nul\uFFFDbell\uFFFDesc\uFFFDend", QueryProtocol.Escape("nul\0bell\aesc\u001Bend"));
        Assert.Equal("\uFFFD\uFFFD\uFFFD\uFFFD", QueryProtocol.Escape("\u000B\u000C\uFFFE\uFFFF"));
    }

    [Fact]
    public void Text_without_control_characters_is_returned_as_is()
    {
        var text = "plain text, é and 😀";
        Assert.Same(text, QueryProtocol.XmlCharacters(text));
    }
}
