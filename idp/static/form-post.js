// An authorization response in response_mode=form_post (login/form_post.html): the page's form
// carries it to the application. Submitted as soon as the page is read; its button does the
// same for a browser without scripts.
document.getElementById("form-post").submit();
